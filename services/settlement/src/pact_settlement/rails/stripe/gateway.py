"""Thin async adapter over the official ``stripe`` SDK for the Stripe rail.

The gateway knows nothing about our database; the Stripe :class:`Rail` wraps it. One
settlement maps to one PaymentIntent with manual capture:

========  =================================  ===============================  ==================
step      Stripe call                        idempotency key                  result status
========  =================================  ===============================  ==================
lock      create PaymentIntent, ``confirm``  ``settlement-{id}-lock``         ``AUTHORIZED``
release   capture                            ``settlement-{id}-capture``      ``CAPTURED``
refund    cancel (before capture)            ``settlement-{id}-cancel``       ``CANCELED``
refund    refund (after capture)             ``settlement-{id}-refund``       refund ``succeeded``
status    retrieve / find_by_settlement      (reads)                          --
========  =================================  ===============================  ==================

Idempotency: every POST carries a key derived from the settlement id and the step, so a step
retried by us (or by the SDK's own network retries, which reuse the key) is executed by Stripe
at most once; Stripe replays the first response for 24 hours and answers a *different* request
under the same key with an ``idempotency_error`` (:class:`StripeIdempotencyConflictError`).
``capture``/``cancel``/``refund_captured`` also *converge*: if Stripe says the PaymentIntent is
already in the state the step wants (a replay after the 24 h key window, or a step done through
the dashboard), they return that state instead of failing.

Reconciliation after a crash (the step is recorded ``pending`` before the call):

- lock: re-run :meth:`StripeGateway.authorize` with the same arguments within 24 h (Stripe
  returns the original PaymentIntent; if the first request never reached Stripe it is made now),
  or look it up with :meth:`StripeGateway.find_by_settlement` (Search API by
  ``metadata['settlement_id']``; falls back to listing when the server has no Search API, as
  localstripe has none). Search is eventually consistent (about a minute), so "not found" right
  after a crash is not proof that the lock never happened: prefer the replay.
- capture / cancel / refund: :meth:`StripeGateway.retrieve` the PaymentIntent and read
  ``status`` (``CAPTURED`` / ``CANCELED``) or re-run the step (converges, see above).

Webhooks: :meth:`StripeGateway.verify_webhook` checks ``Stripe-Signature`` (HMAC-SHA256 with the
endpoint secret, 300 s tolerance) and returns the event. Events arrive duplicated and out of
order, so treat one as a hint: :meth:`StripeGateway.retrieve` the PaymentIntent it names and
apply its *current* status through the state machine (which ignores transitions already made).

Card authorisations lapse (about 7 days for online card payments):
:attr:`StripePaymentState.authorization_expires_at` is Stripe's ``capture_before`` when the API
reports it and ``created + 7 days`` otherwise; the sweeper must capture or cancel before it.

Amounts are Decimal; :func:`~pact_settlement.rails.minor_units.to_stripe_amount` converts them
exactly (an amount that is not whole minor units raises ``AmountPrecisionError``) and refuses
amounts below Stripe's minimum *before* any request.

The ``stripe`` SDK (a third of a second to import) is imported when a gateway is made or a
webhook verified, not with these modules: the results (:mod:`.results`) and errors
(:mod:`.errors`) are imported by every app, Stripe rail or not. SDK errors become
:class:`StripeGatewayError` in :func:`~pact_settlement.rails.stripe.errors.sdk_errors`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from decimal import Decimal
from types import TracebackType
from typing import Any, Final, Self, cast

from pact_settlement.rails.minor_units import (
    stripe_minimum_minor_units,
    to_stripe_amount,
)
from pact_settlement.rails.stripe.errors import (
    StripeConfigurationError,
    StripeDeclinedError,
    StripeGatewayError,
    StripeRequestError,
    StripeUnexpectedStateError,
    StripeWebhookError,
    sdk_errors,
)
from pact_settlement.rails.stripe.ids import as_dict, payment_metadata, step_key
from pact_settlement.rails.stripe.results import (
    PaymentStatus,
    StripePaymentState,
    StripeRefundState,
)

__all__ = ["StripeGateway"]

_EXPAND: Final = ["latest_charge"]
_SEARCH_QUOTE_RE: Final = re.compile(r"(['\\])")

# --------------------------------------------------------------------------------------------
# The gateway
# --------------------------------------------------------------------------------------------


class StripeGateway:
    """Async PaymentIntent operations for one Stripe account (its own client, no globals).

    ``api_base`` points the SDK elsewhere (localstripe in tests). ``rounding`` turns
    Decimal prices into Stripe's integer amounts: ``None`` (the default, and what the service
    uses) means exact — a fraction of a minor unit is refused, never charged rounded.
    """

    def __init__(
        self,
        api_key: str,
        api_base: str | None = None,
        currency: str = "usd",
        max_network_retries: int = 2,
        timeout_s: float = 10,
        *,
        rounding: str | None = None,
        search_max_scan: int = 1000,
    ) -> None:
        if not api_key:
            raise StripeConfigurationError("a Stripe API key is required")
        stripe_minimum_minor_units(currency)  # refuses currencies we cannot check
        self.currency = currency.lower()
        self.rounding = rounding
        self.search_max_scan = search_max_scan
        import stripe

        self._http = stripe.HTTPXClient(timeout=timeout_s)
        base_addresses: dict[str, str | None] = {}
        if api_base:
            base_addresses = {"api": api_base.rstrip("/")}
        self._client = stripe.StripeClient(
            api_key,
            base_addresses=cast(Any, base_addresses),
            max_network_retries=max_network_retries,
            http_client=self._http,
        )
        self._search_supported: bool | None = None

    async def aclose(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- lock / release / refund -------------------------------------------------------------

    async def authorize(
        self,
        settlement_id: str,
        amount: Decimal,
        customer: str,
        payment_method: str,
        metadata: Mapping[str, str] | None = None,
        *,
        intent_id: str | None = None,
        currency: str | None = None,
        idempotency_key: str | None = None,
    ) -> StripePaymentState:
        """Lock: a manual-capture PaymentIntent confirmed off-session with a saved card.

        Returns the state (normally ``AUTHORIZED``; ``PROCESSING`` for asynchronous methods).
        Raises :class:`StripeDeclinedError` on a decline and when the card needs
        authentication (``REQUIRES_ACTION``), which an off-session charge cannot obtain;
        :class:`~pact_settlement.rails.minor_units.AmountBelowRailMinimumError` before any
        request when the amount is below Stripe's minimum.
        """
        code = (currency or self.currency).lower()
        amount_minor = to_stripe_amount(amount, code, self.rounding)
        md = payment_metadata(settlement_id, intent_id, metadata)
        params: dict[str, Any] = {
            "amount": amount_minor,
            "currency": code,
            "customer": customer,
            "payment_method": payment_method,
            # card only: automatic payment methods would require a return_url when confirming
            "payment_method_types": ["card"],
            "capture_method": "manual",
            "confirm": True,
            "off_session": True,
            "metadata": md,
            "expand": _EXPAND,
        }
        key = idempotency_key or step_key(settlement_id, "lock")
        with sdk_errors(mutating=True):
            pi = await self._client.v1.payment_intents.create_async(
                cast(Any, params), {"idempotency_key": key}
            )
        state = StripePaymentState.from_stripe(pi)
        if state.status is PaymentStatus.REQUIRES_ACTION:
            raise StripeDeclinedError(
                "the card requires authentication, which an off-session payment cannot get",
                decline_code="authentication_required",
                payment_intent_id=state.payment_intent_id,
            )
        if state.status is PaymentStatus.FAILED:
            raise StripeDeclinedError(
                "the payment method was declined",
                decline_code=state.last_error_code,
                payment_intent_id=state.payment_intent_id,
            )
        return state

    async def capture(
        self,
        settlement_id: str,
        payment_intent_id: str,
        *,
        idempotency_key: str | None = None,
        amount_minor: int | None = None,
    ) -> StripePaymentState:
        """Release: capture the full authorised amount, or only ``amount_minor`` of it (a
        partial capture: Stripe releases the rest of the authorisation to the buyer).
        Converges if already captured."""
        return await self._transition(
            "capture",
            settlement_id,
            payment_intent_id,
            PaymentStatus.CAPTURED,
            idempotency_key,
            amount_minor=amount_minor,
        )

    async def cancel(
        self, settlement_id: str, payment_intent_id: str, *, idempotency_key: str | None = None
    ) -> StripePaymentState:
        """Refund before capture: void the authorisation. Converges if already canceled."""
        return await self._transition(
            "cancel",
            settlement_id,
            payment_intent_id,
            PaymentStatus.CANCELED,
            idempotency_key,
        )

    async def refund_captured(
        self, settlement_id: str, payment_intent_id: str, *, idempotency_key: str | None = None
    ) -> StripeRefundState:
        """Refund after capture: refund the whole captured amount. Converges if refunded.

        Existing refunds are checked first, so a second refund of the same PaymentIntent is
        never created even after the idempotency key expired.
        """
        key = idempotency_key or step_key(settlement_id, "refund")
        existing = await self._existing_full_refund(payment_intent_id)
        if existing is not None:
            return existing
        params = {"payment_intent": payment_intent_id, "metadata": {"settlement_id": settlement_id}}
        try:
            with sdk_errors(mutating=True):
                refund = await self._client.v1.refunds.create_async(
                    cast(Any, params), {"idempotency_key": key}
                )
        except StripeRequestError:
            existing = await self._existing_full_refund(payment_intent_id)
            if existing is not None:
                return existing
            raise
        return StripeRefundState.from_stripe(refund)

    async def charge(
        self,
        amount: Decimal,
        customer: str,
        payment_method: str,
        metadata: Mapping[str, str],
        *,
        idempotency_key: str,
        currency: str | None = None,
    ) -> StripePaymentState:
        """Charge now (automatic capture), off-session with a saved card: a balance top-up.

        Exact amounts only (``amount`` must be whole minor units of the currency): what is
        charged is exactly what is credited. Returns ``CAPTURED`` (or ``PROCESSING``); raises
        :class:`StripeDeclinedError` on a decline or when authentication would be needed.
        """
        code = (currency or self.currency).lower()
        amount_minor = to_stripe_amount(amount, code, rounding=None)
        md: dict[str, str] = {}
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise ValueError("Stripe metadata keys and values must be strings")
            md[k] = v
        params: dict[str, Any] = {
            "amount": amount_minor,
            "currency": code,
            "customer": customer,
            "payment_method": payment_method,
            "payment_method_types": ["card"],
            "capture_method": "automatic",
            "confirm": True,
            "off_session": True,
            "metadata": md,
            "expand": _EXPAND,
        }
        with sdk_errors(mutating=True):
            pi = await self._client.v1.payment_intents.create_async(
                cast(Any, params), {"idempotency_key": idempotency_key}
            )
        state = StripePaymentState.from_stripe(pi)
        if state.status in (PaymentStatus.REQUIRES_ACTION, PaymentStatus.FAILED):
            raise StripeDeclinedError(
                "the payment method was declined",
                decline_code=state.last_error_code
                or (
                    "authentication_required"
                    if state.status is PaymentStatus.REQUIRES_ACTION
                    else None
                ),
                payment_intent_id=state.payment_intent_id,
            )
        return state

    # -- payouts: Transfers to Connect accounts -------------------------------------------

    async def transfer(
        self,
        payout_id: str,
        amount: Decimal,
        destination: str,
        *,
        idempotency_key: str,
        currency: str | None = None,
    ) -> dict[str, Any]:
        """A seller payout: a Transfer of ``amount`` (exact minor units) from the platform's
        balance to the Connect account ``destination``, grouped under ``transfer_group =
        payout_id`` so :meth:`find_transfers` finds it after a crash (even past the 24 h key
        window). Returns the Transfer as a dict (``id``, ``reversed``, ``amount``)."""
        code = (currency or self.currency).lower()
        params: dict[str, Any] = {
            "amount": to_stripe_amount(amount, code, rounding=None),
            "currency": code,
            "destination": destination,
            "transfer_group": payout_id,
            "metadata": {"payout_id": payout_id, "pact_purpose": "payout"},
        }
        with sdk_errors(mutating=True):
            transfer = await self._client.v1.transfers.create_async(
                cast(Any, params), {"idempotency_key": idempotency_key}
            )
        return as_dict(transfer)

    async def find_transfers(self, payout_id: str) -> list[dict[str, Any]]:
        """The Transfers made for ``payout_id`` (by ``transfer_group``), oldest first."""
        with sdk_errors(mutating=False):
            page = await self._client.v1.transfers.list_async(
                cast(Any, {"transfer_group": payout_id, "limit": 100})
            )
        found = [t for t in as_dict(page).get("data", []) if isinstance(t, dict)]
        return sorted(found, key=lambda t: (t.get("created", 0), t.get("id", "")))

    # -- reads -----------------------------------------------------------------------------

    async def retrieve(self, payment_intent_id: str) -> StripePaymentState:
        with sdk_errors(mutating=False):
            pi = await self._client.v1.payment_intents.retrieve_async(
                payment_intent_id, cast(Any, {"expand": _EXPAND})
            )
        return StripePaymentState.from_stripe(pi)

    async def find_by_settlement(self, settlement_id: str) -> list[StripePaymentState]:
        """PaymentIntents whose ``metadata.settlement_id`` is ``settlement_id``, oldest first.

        Uses the Search API; when the server has none (HTTP 404 on the search route, as with
        localstripe) it lists PaymentIntents instead, scanning at most ``search_max_scan``.
        """
        found: list[StripePaymentState] = []
        if self._search_supported is not False:
            try:
                with sdk_errors(mutating=False):
                    found = await self._search(settlement_id)
                self._search_supported = True
            except StripeRequestError as exc:
                if exc.http_status != 404:
                    raise
                self._search_supported = False
        if self._search_supported is False:
            found = await self._scan(settlement_id)
        return sorted(found, key=lambda s: (s.created, s.payment_intent_id))

    # -- webhooks --------------------------------------------------------------------------

    @staticmethod
    def verify_webhook(
        payload: bytes, sig_header: str | None, secret: str, *, tolerance_s: int = 300
    ) -> dict[str, Any]:
        """Verify ``Stripe-Signature`` over the raw body and return the event as a dict.

        Raises :class:`StripeWebhookError` for a missing/malformed header, a signature made
        with another secret or over another body, a timestamp older than ``tolerance_s``, or a
        body that is not a Stripe event.
        """
        if not secret:
            raise StripeConfigurationError("no webhook endpoint secret configured")
        import stripe

        try:
            stripe.WebhookSignature.verify_header(payload, sig_header, secret, tolerance_s)
        except stripe.SignatureVerificationError as exc:
            raise StripeWebhookError(f"webhook signature rejected: {exc}") from exc
        except (UnicodeDecodeError, ValueError) as exc:
            raise StripeWebhookError(f"webhook body is not valid UTF-8 text: {exc}") from exc
        try:
            event = json.loads(payload)
        except ValueError as exc:
            raise StripeWebhookError(f"webhook body is not JSON: {exc}") from exc
        if (
            not isinstance(event, dict)
            or not isinstance(event.get("id"), str)
            or not isinstance(event.get("type"), str)
            or not isinstance((event.get("data") or {}).get("object"), dict)
        ):
            raise StripeWebhookError("webhook body is not a Stripe event")
        return event

    @staticmethod
    def payment_state_from_event(event: Mapping[str, Any]) -> StripePaymentState | None:
        """The PaymentIntent snapshot carried by a ``payment_intent.*`` event, else ``None``.

        A snapshot can be stale (events arrive out of order); use it to find the PaymentIntent
        and :meth:`retrieve` the current state before acting.
        """
        if not str(event.get("type", "")).startswith("payment_intent."):
            return None
        obj = (event.get("data") or {}).get("object")
        if not isinstance(obj, Mapping) or obj.get("object") != "payment_intent":
            return None
        return StripePaymentState.from_stripe(obj)

    # -- internals -------------------------------------------------------------------------

    async def _transition(
        self,
        step: str,
        settlement_id: str,
        payment_intent_id: str,
        target: PaymentStatus,
        idempotency_key: str | None,
        *,
        amount_minor: int | None = None,
    ) -> StripePaymentState:
        key = idempotency_key or step_key(settlement_id, step)
        service = self._client.v1.payment_intents
        call = service.capture_async if step == "capture" else service.cancel_async
        params: dict[str, Any] = {"expand": _EXPAND}
        if amount_minor is not None:
            params["amount_to_capture"] = amount_minor
        try:
            with sdk_errors(mutating=True):
                pi = await call(payment_intent_id, cast(Any, params), {"idempotency_key": key})
        except StripeRequestError as exc:
            if exc.http_status == 404:
                raise
            # Most likely "payment_intent_unexpected_state": converge if already there.
            current = await self.retrieve(payment_intent_id)
            if current.status is target:
                return current
            raise StripeUnexpectedStateError(
                f"cannot {step} PaymentIntent {payment_intent_id} in status "
                f"{current.stripe_status!r}",
                state=current,
                stripe_code=exc.stripe_code,
                http_status=exc.http_status,
                request_id=exc.request_id,
            ) from exc
        state = StripePaymentState.from_stripe(pi)
        accepted = {target, PaymentStatus.PROCESSING} if step == "capture" else {target}
        if state.status not in accepted:
            # Real Stripe answers 400 here; servers that answer 200 (localstripe captures a
            # canceled PaymentIntent's charge) must not make us report success.
            raise StripeUnexpectedStateError(
                f"{step} of PaymentIntent {payment_intent_id} left it in status "
                f"{state.stripe_status!r}",
                state=state,
            )
        return state

    async def _existing_full_refund(self, payment_intent_id: str) -> StripeRefundState | None:
        try:
            current = await self.retrieve(payment_intent_id)
            with sdk_errors(mutating=False):
                refunds = await self._client.v1.refunds.list_async(
                    cast(Any, {"payment_intent": payment_intent_id, "limit": 100})
                )
        except StripeGatewayError:
            return None
        states = [StripeRefundState.from_stripe(r) for r in as_dict(refunds).get("data", [])]
        live = [r for r in states if r.status in ("succeeded", "pending")]
        if live and sum(r.amount_minor for r in live) >= current.amount_minor:
            return live[0]
        return None

    async def _search(self, settlement_id: str) -> list[StripePaymentState]:
        escaped = _SEARCH_QUOTE_RE.sub(r"\\\1", settlement_id)
        params: dict[str, Any] = {
            "query": f"metadata['settlement_id']:'{escaped}'",
            "limit": 100,
            "expand": ["data.latest_charge"],
        }
        found: list[StripePaymentState] = []
        while True:
            page = as_dict(await self._client.v1.payment_intents.search_async(cast(Any, params)))
            found.extend(StripePaymentState.from_stripe(pi) for pi in page.get("data", []))
            if not page.get("has_more") or not page.get("next_page"):
                return found
            params["page"] = page["next_page"]

    async def _scan(self, settlement_id: str) -> list[StripePaymentState]:
        params: dict[str, Any] = {"limit": 100}
        found: list[StripePaymentState] = []
        scanned = 0
        with sdk_errors(mutating=False):
            while scanned < self.search_max_scan:
                page = as_dict(await self._client.v1.payment_intents.list_async(cast(Any, params)))
                data = page.get("data", [])
                scanned += len(data)
                found.extend(
                    StripePaymentState.from_stripe(pi)
                    for pi in data
                    if (pi.get("metadata") or {}).get("settlement_id") == settlement_id
                )
                if not page.get("has_more") or not data:
                    break
                params["starting_after"] = data[-1]["id"]
        return found
