"""The Stripe rail: one manual-capture PaymentIntent per settlement.

======== ============================================== =========================================
step     Stripe                                         idempotency key
======== ============================================== =========================================
prepare  refuse bond / below minimum / no profile;      (nothing sent)
         snapshot customer, card, currency, amount
lock     PaymentIntent ``capture_method=manual``,       ``settlement-{id}-lock``
         confirmed off-session with the buyer's saved
         card → ``requires_capture``
release  capture                                        ``settlement-{id}-release``
refund   cancel (void the authorisation); after a       ``settlement-{id}-refund``
         capture: refund                                (``…-refund-captured``)
slash    as refund: there is no seller bond on a card   ``settlement-{id}-slash``
         (settlements with a bond are refused at
         creation); the buyer is made whole
status   retrieve (or find by ``metadata.settlement_id``) (read only)
======== ============================================== =========================================

Amounts: the settlement amount (a Decimal in the agreed price unit) is charged in
``STRIPE_CURRENCY`` exactly: the agreed price must be a whole number of the currency's minor
units (cents; 10 fils for the three-decimal currencies), else ``prepare`` refuses it with
``AMOUNT_NOT_IN_RAIL_UNITS`` — it is never rounded into a different charge. The charged integer
amount is recorded in the binding and in the lock's result. An amount below Stripe's minimum
for the currency (USD 0.50, …) is refused in ``prepare`` with ``AMOUNT_BELOW_RAIL_MINIMUM``.
Both refusals happen before anything is recorded or sent (micropayments belong on the ledger
rail against a top-up balance, see the README).

Failures: a decline ends the lock ``failed`` (``INSUFFICIENT_ESCROW`` for ``insufficient_funds``,
else ``FAILED_ESCROW``); network errors, timeouts, Stripe 5xx and rate limits leave the step
pending (``retryable``), and the reconciler resolves it from ``status``. Card authorisations
lapse about 7 days after the lock: ``hold_expires_at`` on the binding drives the expiry sweep
(:mod:`pact_settlement.rails.expiry`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final

import structlog
from pact_schema import FailureCode
from pydantic import BaseModel, ConfigDict, field_serializer
from sqlalchemy.ext.asyncio import AsyncSession

from pact_settlement.kit.errors import ProblemCode
from pact_settlement.kit.money import decimal_text
from pact_settlement.kit.time import session_now
from pact_settlement.rails._binding_io import BindingIO
from pact_settlement.rails.base import (
    PartyProfile,
    RailError,
    RailOpStatus,
    RailPayout,
    RailProfiles,
    RailRefusedError,
    RailResult,
    RailSettlement,
    RailStep,
)
from pact_settlement.rails.bindings import RailBindingRepository
from pact_settlement.rails.minor_units import (
    STRIPE_MINIMUM_CHARGE,
    AmountBelowRailMinimumError,
    AmountError,
    from_stripe_amount,
    stripe_exponent,
    to_stripe_amount,
)
from pact_settlement.rails.stripe.errors import (
    StripeConfigurationError,
    StripeDeclinedError,
    StripeGatewayError,
    StripeTransientError,
)
from pact_settlement.rails.stripe.gateway import StripeGateway
from pact_settlement.rails.stripe.results import (
    AUTHORIZATION_VALIDITY,
    PaymentStatus,
    StripePaymentState,
)
from pact_settlement.rails.stripe.settings import StripeSettings

__all__ = ["StripeBindingParams", "StripeRail", "describe_stripe"]

log = structlog.get_logger(__name__)
#: A lock is (re)sent only within this time of being recorded: inside Stripe's 24 h
#: idempotency window, so a replay can never create a second PaymentIntent.
LOCK_REPLAY_WINDOW: Final = timedelta(hours=23)


class StripeBindingParams(BaseModel):
    """What a stripe settlement is bound to (``rail_bindings.params``), snapshot by ``prepare``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    customer: str
    payment_method: str
    currency: str
    amount_minor: int  # the integer amount Stripe charges
    amount: Decimal  # the settlement amount it stands for
    captured_at: datetime | None = None  # set by the authorisation-expiry sweep's capture

    @field_serializer("amount")
    def _amount_text(self, amount: Decimal) -> str:
        return decimal_text(amount)

    def stored(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def describe_stripe(settings: StripeSettings) -> dict[str, Any]:
    """What ``GET /v1/rails`` says about this rail."""
    currency = settings.currency
    return {
        "transactional": False,
        "currency": currency,
        "unit": f"{currency.upper()} (1 price unit = 1 {currency.upper()})",
        "minimum_amount": decimal_text(STRIPE_MINIMUM_CHARGE[currency]),
        "amount_quantum": decimal_text(from_stripe_amount(_quantum_minor(currency), currency)),
        "rounding": "none: amounts must be whole minor units (else AMOUNT_NOT_IN_RAIL_UNITS)",
        "supports_bond": False,
        "authorization_validity_s": int(AUTHORIZATION_VALIDITY.total_seconds()),
        "capture_margin_s": settings.capture_margin_s,
        "webhook": "/v1/webhooks/stripe",
        "webhook_configured": settings.webhook_secret is not None,
        "needs_profile": {"buyer": ["stripe_customer", "stripe_payment_method"]},
    }


def _quantum_minor(currency: str) -> int:
    """The smallest chargeable step in Stripe's integer units (10 for three-decimal ones)."""
    return 10 if stripe_exponent(currency) == 3 else 1


def _key_step(idempotency_key: str) -> RailStep:
    return RailStep(idempotency_key.rsplit("-", 1)[-1])


def _rail_error(exc: StripeGatewayError, step: RailStep) -> RailError:
    """Gateway error → rail error. ``retryable`` keeps the step pending for the reconciler."""
    if isinstance(exc, StripeDeclinedError):
        return RailError(
            exc.failure_code,
            f"the card was declined ({exc.decline_code or 'no reason given'}): {exc}",
        )
    if isinstance(exc, StripeTransientError) or exc.retryable:
        return RailError(
            FailureCode.SETTLEMENT_FAILED, f"Stripe unavailable: {exc}", retryable=True
        )
    if isinstance(exc, StripeConfigurationError):
        # Nothing is held yet for a lock: fail it. A capture/cancel must happen eventually:
        # keep it pending until an operator fixes the key (the reconciler retries).
        return RailError(
            FailureCode.FAILED_ESCROW,
            f"Stripe refused our credentials: {exc}",
            retryable=step is not RailStep.LOCK,
        )
    return RailError(FailureCode.FAILED_ESCROW, f"Stripe refused the {step.value}: {exc}")


def _no_route(exc: StripeGatewayError) -> bool:
    """A 404 that is not a Stripe error object: the server has no such route (localstripe
    has no Transfers API), so the request made nothing. Stripe's own 404s carry a code
    (``resource_missing``)."""
    return exc.http_status == 404 and exc.stripe_code is None


class StripeRail:
    name = "stripe"
    transactional = False
    supports_bond = False

    def __init__(
        self, session: AsyncSession, settings: StripeSettings, gateway: StripeGateway
    ) -> None:
        self.session = session
        self.settings = settings
        self.gateway = gateway
        self.bindings = BindingIO(session, self.name)
        self.asset = settings.currency.upper()

    # -- payouts: a Transfer to the seller's Connect account ------------------------------

    def payout_destination(self, profile: PartyProfile | None) -> str:
        if profile is None or not profile.stripe_connect_account:
            agent = profile.agent_id if profile is not None else "the agent"
            raise RailRefusedError(
                FailureCode.MISSING_REQUIRED_CREDENTIALS,
                f"{agent} has no stripe_connect_account (acct_…) in its stripe payment "
                "profile: nowhere to transfer a payout",
            )
        return profile.stripe_connect_account

    async def payout(self, payout: RailPayout, *, idempotency_key: str) -> RailResult:
        try:
            to_stripe_amount(payout.amount, self.settings.currency, rounding=None)
        except AmountError as exc:
            raise RailError(
                FailureCode.AMOUNT_NOT_IN_RAIL_UNITS,
                f"cannot transfer {decimal_text(payout.amount)} {payout.asset} exactly: {exc}",
            ) from exc
        try:
            transfer = await self.gateway.transfer(
                payout.id, payout.amount, payout.destination, idempotency_key=idempotency_key
            )
        except StripeGatewayError as exc:
            if _no_route(exc):
                # The server has no /v1/transfers route at all (localstripe): nothing was
                # made; say so, never pretend the money moved.
                raise RailError(
                    ProblemCode.PAYOUT_NOT_SUPPORTED,
                    f"this Stripe server has no Transfers API: {exc}",
                ) from exc
            raise _rail_error(exc, RailStep.PAYOUT) from exc
        return self._transfer_result(transfer)

    async def payout_status(self, payout: RailPayout, *, idempotency_key: str) -> RailResult:
        try:
            transfers = await self.gateway.find_transfers(payout.id)
        except StripeGatewayError as exc:
            if _no_route(exc):  # no Transfers API: no transfer was ever made on this server
                return RailResult(step=RailStep.PAYOUT, status=RailOpStatus.NOT_FOUND)
            raise _rail_error(exc, RailStep.PAYOUT) from exc
        if not transfers:
            return RailResult(step=RailStep.PAYOUT, status=RailOpStatus.NOT_FOUND)
        return self._transfer_result(transfers[0])

    @staticmethod
    def _transfer_result(transfer: dict[str, Any]) -> RailResult:
        """A Transfer moves the money when it is created; one reversed since is not paid."""
        if transfer.get("reversed"):
            return RailResult(
                step=RailStep.PAYOUT,
                status=RailOpStatus.FAILED,
                reference=str(transfer.get("id")),
                detail={"code": "TRANSFER_REVERSED", "error": "the Transfer was reversed"},
            )
        return RailResult(
            step=RailStep.PAYOUT, status=RailOpStatus.SUCCEEDED, reference=str(transfer.get("id"))
        )

    # -- prepare (in the recording transaction) --------------------------------------------

    async def prepare(self, settlement: RailSettlement, profiles: RailProfiles) -> None:
        s = settlement
        if s.bond > 0:
            raise RailRefusedError(
                ProblemCode.RAIL_NOT_AVAILABLE,
                f"the stripe rail cannot hold a seller bond ({decimal_text(s.bond)} required "
                "by REQUIRE_SELLER_BOND); use the ledger or evm rail for bonded settlements",
            )
        currency = self.settings.currency
        try:
            # Exact: a price that is not whole minor units is refused, never charged rounded.
            amount_minor = to_stripe_amount(s.amount, currency, rounding=None)
        except AmountBelowRailMinimumError as exc:
            raise RailRefusedError(FailureCode.AMOUNT_BELOW_RAIL_MINIMUM, str(exc)) from exc
        except AmountError as exc:
            raise RailRefusedError(
                exc.failure_code,
                f"cannot charge {decimal_text(s.amount)} {currency.upper()} on stripe exactly: "
                f"{exc}",
            ) from exc
        profile = profiles.buyer
        if profile is None or not profile.stripe_customer or not profile.stripe_payment_method:
            raise RailRefusedError(
                FailureCode.MISSING_REQUIRED_CREDENTIALS,
                f"buyer {s.buyer} has no stripe payment profile (an operator sets it with "
                f"PUT /v1/accounts/{s.buyer}/payment-profiles/stripe)",
            )
        repo = RailBindingRepository.from_session(self.session)
        if await repo.get_for(s.id) is not None:
            return
        await repo.create(
            settlement_id=s.id,
            rail=self.name,
            params=StripeBindingParams(
                customer=profile.stripe_customer,
                payment_method=profile.stripe_payment_method,
                currency=currency,
                amount_minor=amount_minor,
                amount=s.amount,
            ).stored(),
            # Provisional (the card is authorised after this): Stripe's own figure replaces it.
            hold_expires_at=session_now(self.session) + AUTHORIZATION_VALIDITY,
        )

    # -- steps -----------------------------------------------------------------------------

    async def lock(self, settlement: RailSettlement, *, idempotency_key: str) -> RailResult:
        s = settlement
        binding = await self.bindings.load(s.id)
        p = StripeBindingParams.model_validate(binding.params)
        if session_now(self.session) - binding.created_at > LOCK_REPLAY_WINDOW:
            # Stripe forgets idempotency keys after 24 h: past that, a replay could create a
            # second PaymentIntent. Adopt the one the first attempt made, or give up the lock.
            late = await self._lock_status(s)
            if late.status is RailOpStatus.SUCCEEDED:
                return late
            raise RailError(
                FailureCode.FAILED_ESCROW,
                f"the lock was recorded at {binding.created_at.isoformat()} and never reached "
                "Stripe; it is not made this late",
            )
        try:
            state = await self.gateway.authorize(
                s.id,
                from_stripe_amount(p.amount_minor, p.currency),
                p.customer,
                p.payment_method,
                intent_id=s.intent_id,
                currency=p.currency,
                idempotency_key=idempotency_key,
            )
        except AmountError as exc:  # the snapshot was checked in prepare; defensive
            raise RailError(FailureCode.AMOUNT_BELOW_RAIL_MINIMUM, str(exc)) from exc
        except StripeGatewayError as exc:
            raise _rail_error(exc, RailStep.LOCK) from exc
        await self._remember(s.id, state)
        if state.status is PaymentStatus.PROCESSING:
            raise RailError(
                FailureCode.SETTLEMENT_FAILED,
                f"PaymentIntent {state.payment_intent_id} is processing; waiting for Stripe",
                retryable=True,
            )
        if state.status is not PaymentStatus.AUTHORIZED:
            raise RailError(
                FailureCode.FAILED_ESCROW,
                f"PaymentIntent {state.payment_intent_id} is {state.stripe_status}, not "
                "requires_capture",
            )
        log.info(
            "rail.stripe.authorized",
            settlement_id=s.id,
            payment_intent=state.payment_intent_id,
            amount_minor=state.amount_minor,
            currency=state.currency,
        )
        return self._result(RailStep.LOCK, state)

    async def release(self, settlement: RailSettlement, *, idempotency_key: str) -> RailResult:
        s = settlement
        pi = await self._payment_intent_id(s)
        try:
            state = await self.gateway.capture(s.id, pi, idempotency_key=idempotency_key)
        except StripeGatewayError as exc:
            raise _rail_error(exc, RailStep.RELEASE) from exc
        if state.status is PaymentStatus.PROCESSING:
            raise RailError(
                FailureCode.SETTLEMENT_FAILED,
                f"capture of {pi} is processing; waiting for Stripe",
                retryable=True,
            )
        log.info("rail.stripe.captured", settlement_id=s.id, payment_intent=pi)
        return self._result(RailStep.RELEASE, state)

    async def release_partial(self, s: RailSettlement, amount: Decimal, key: str) -> RailResult:
        """A stream's close: a partial capture (``amount_to_capture``) of the authorisation;
        Stripe returns the uncaptured rest to the buyer's card. One call, idempotent on
        ``key``. ``amount`` must be whole minor units (else AMOUNT_NOT_IN_RAIL_UNITS: never
        captured rounded)."""
        try:
            amount_minor = to_stripe_amount(amount, self.settings.currency, rounding=None)
        except AmountError as exc:
            raise RailError(exc.failure_code, str(exc)) from exc
        pi = await self._payment_intent_id(s)
        try:
            state = await self.gateway.capture(
                s.id, pi, idempotency_key=key, amount_minor=amount_minor
            )
        except StripeGatewayError as exc:
            raise _rail_error(exc, RailStep.RELEASE_PARTIAL) from exc
        if state.status is PaymentStatus.PROCESSING:
            raise RailError(
                FailureCode.SETTLEMENT_FAILED,
                f"partial capture of {pi} is processing; waiting for Stripe",
                retryable=True,
            )
        log.info(
            "rail.stripe.captured_partially",
            settlement_id=s.id,
            payment_intent=pi,
            amount_minor=amount_minor,
        )
        return self._result(RailStep.RELEASE_PARTIAL, state)

    async def refund(self, settlement: RailSettlement, *, idempotency_key: str) -> RailResult:
        return await self._give_back(RailStep.REFUND, settlement, idempotency_key)

    async def slash(self, settlement: RailSettlement, *, idempotency_key: str) -> RailResult:
        # No seller bond can exist on this rail (refused in prepare): slashing makes the buyer
        # whole exactly like a refund; the settlement records that it was a slash.
        return await self._give_back(RailStep.SLASH, settlement, idempotency_key)

    async def status(self, settlement: RailSettlement, *, idempotency_key: str) -> RailResult:
        s = settlement
        step = _key_step(idempotency_key)
        try:
            if step is RailStep.LOCK:
                return await self._lock_status(s)
            pi = await self._find_payment_intent_id(s)
            if pi is None:
                return RailResult(step=step, status=RailOpStatus.NOT_FOUND)
            state = await self.gateway.retrieve(pi)
            if step in (RailStep.RELEASE, RailStep.RELEASE_PARTIAL):
                return self._release_status(state, step)
            return await self._give_back_status(step, state)
        except StripeGatewayError as exc:
            raise _rail_error(exc, step) from exc

    # -- internals -------------------------------------------------------------------------

    async def _give_back(
        self, step: RailStep, s: RailSettlement, idempotency_key: str
    ) -> RailResult:
        pi = await self._payment_intent_id(s)
        try:
            current = await self.gateway.retrieve(pi)
            if current.status is PaymentStatus.CAPTURED:
                refund = await self.gateway.refund_captured(
                    s.id, pi, idempotency_key=f"{idempotency_key}-captured"
                )
                log.info("rail.stripe.refunded", settlement_id=s.id, payment_intent=pi, step=step)
                return RailResult(
                    step=step,
                    status=RailOpStatus.SUCCEEDED,
                    reference=refund.refund_id,
                    detail={"payment_intent": pi, "refund_status": refund.status},
                )
            if current.status in (PaymentStatus.FAILED, PaymentStatus.REQUIRES_ACTION):
                # Nothing is held on the card: the buyer already has its money.
                return self._result(step, current)
            state = await self.gateway.cancel(s.id, pi, idempotency_key=idempotency_key)
        except StripeGatewayError as exc:
            raise _rail_error(exc, step) from exc
        log.info("rail.stripe.canceled", settlement_id=s.id, payment_intent=pi, step=step)
        return self._result(step, state)

    async def _lock_status(self, s: RailSettlement) -> RailResult:
        binding = await self.bindings.load(s.id)
        if binding.external_id:
            states = [await self.gateway.retrieve(binding.external_id)]
        else:
            # Replaying the lock with the same key (the reconciler does so on NOT_FOUND) never
            # creates a second PaymentIntent within Stripe's 24 h key window.
            states = await self.gateway.find_by_settlement(s.id)
        if not states:
            return RailResult(step=RailStep.LOCK, status=RailOpStatus.NOT_FOUND)
        live = [
            st for st in states if st.status in (PaymentStatus.AUTHORIZED, PaymentStatus.CAPTURED)
        ]
        if len(live) > 1:
            log.error(
                "rail.stripe.duplicate_payment_intents",
                settlement_id=s.id,
                payment_intents=[st.payment_intent_id for st in live],
            )
        state = (live or states)[0]
        await self._remember(s.id, state)
        if state.status in (PaymentStatus.AUTHORIZED, PaymentStatus.CAPTURED):
            return self._result(RailStep.LOCK, state)
        if state.status in (PaymentStatus.PROCESSING, PaymentStatus.REQUIRES_CONFIRMATION):
            return self._result(RailStep.LOCK, state, RailOpStatus.PENDING)
        if state.status is PaymentStatus.CANCELED:
            return self._failed(
                RailStep.LOCK,
                state,
                FailureCode.FAILED_ESCROW,
                f"PaymentIntent {state.payment_intent_id} was canceled",
            )
        code = (
            FailureCode.INSUFFICIENT_ESCROW
            if state.last_error_code == "insufficient_funds"
            else FailureCode.FAILED_ESCROW
        )
        return self._failed(
            RailStep.LOCK,
            state,
            code,
            f"the card was declined ({state.last_error_code or state.stripe_status})",
        )

    def _release_status(
        self, state: StripePaymentState, step: RailStep = RailStep.RELEASE
    ) -> RailResult:
        if state.status is PaymentStatus.CAPTURED:
            return self._result(step, state)
        if state.status is PaymentStatus.AUTHORIZED:
            return self._result(step, state, RailOpStatus.NOT_FOUND)
        if state.status is PaymentStatus.PROCESSING:
            return self._result(step, state, RailOpStatus.PENDING)
        return self._failed(
            step,
            state,
            FailureCode.FAILED_ESCROW,
            f"PaymentIntent {state.payment_intent_id} is {state.stripe_status}: nothing to capture",
        )

    async def _give_back_status(self, step: RailStep, state: StripePaymentState) -> RailResult:
        if state.status in (
            PaymentStatus.CANCELED,
            PaymentStatus.FAILED,
            PaymentStatus.REQUIRES_ACTION,
        ):
            return self._result(step, state)
        if state.status is PaymentStatus.CAPTURED:
            refund = await self.gateway._existing_full_refund(state.payment_intent_id)
            if refund is None:
                return self._result(step, state, RailOpStatus.NOT_FOUND)
            return RailResult(
                step=step,
                status=RailOpStatus.SUCCEEDED,
                reference=refund.refund_id,
                detail={"payment_intent": state.payment_intent_id, "refund_status": refund.status},
            )
        if state.status is PaymentStatus.PROCESSING:
            return self._result(step, state, RailOpStatus.PENDING)
        return self._result(step, state, RailOpStatus.NOT_FOUND)  # still authorised

    async def _payment_intent_id(self, s: RailSettlement) -> str:
        pi = await self._find_payment_intent_id(s)
        if pi is None:
            raise RailError(
                FailureCode.FAILED_ESCROW, f"settlement {s.id} has no PaymentIntent on Stripe"
            )
        return pi

    async def _find_payment_intent_id(self, s: RailSettlement) -> str | None:
        binding = await self.bindings.load(s.id)
        pi = binding.external_id or await self.bindings.operation_ref(s.id, RailStep.LOCK)
        if not pi:
            try:
                found = await self.gateway.find_by_settlement(s.id)
            except StripeGatewayError as exc:
                raise _rail_error(exc, RailStep.LOCK) from exc
            live = [st for st in found if st.status is not PaymentStatus.FAILED]
            pi = (live or found)[0].payment_intent_id if found else None
        return pi or None

    async def _remember(self, settlement_id: str, state: StripePaymentState) -> None:
        """Record the PaymentIntent id and when its authorisation lapses (for the sweep)."""
        await self.bindings.update(
            settlement_id,
            external_id=state.payment_intent_id,
            hold_expires_at=state.authorization_expires_at,
        )

    @staticmethod
    def _result(
        step: RailStep,
        state: StripePaymentState,
        status: RailOpStatus = RailOpStatus.SUCCEEDED,
    ) -> RailResult:
        detail: dict[str, Any] = {
            "payment_intent": state.payment_intent_id,
            "stripe_status": state.stripe_status,
            "amount_minor": state.amount_minor,
            "currency": state.currency,
        }
        if state.authorization_expires_at is not None:
            detail["authorization_expires_at"] = state.authorization_expires_at.isoformat()
        return RailResult(
            step=step, status=status, reference=state.payment_intent_id, detail=detail
        )

    @staticmethod
    def _failed(step: RailStep, state: StripePaymentState, code: str, detail: str) -> RailResult:
        return RailResult(
            step=step,
            status=RailOpStatus.FAILED,
            reference=state.payment_intent_id,
            detail={"code": code, "detail": detail, "payment_intent": state.payment_intent_id},
        )
