"""StripeGateway with the real ``stripe`` SDK against localstripe (see tests/fixtures/rails.py)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import stripe
from fixtures.rails import STRIPE_KEY, CardFactory, localstripe_requests
from fixtures.waits import HANG_GUARD_S
from pact_schema.codes import FailureCode
from pact_settlement.rails.minor_units import AmountBelowRailMinimumError, UnsupportedCurrencyError
from pact_settlement.rails.stripe.errors import (
    StripeConfigurationError,
    StripeDeclinedError,
    StripeIdempotencyConflictError,
    StripeRequestError,
    StripeTransientError,
    StripeUnexpectedStateError,
    StripeWebhookError,
    _translate,
)
from pact_settlement.rails.stripe.gateway import StripeGateway
from pact_settlement.rails.stripe.ids import idempotency_key
from pact_settlement.rails.stripe.results import AUTHORIZATION_VALIDITY, PaymentStatus

pytestmark = [
    pytest.mark.stripe,
    # stripe's HTTPXClient passes bytes as data=; httpx deprecates that (SDK's business).
    pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning"),
]

WEBHOOK_SECRET = "whsec_test_pact_gateway"


def new_id() -> str:
    return str(uuid.uuid4())


async def payment_intents_for(raw: stripe.StripeClient, settlement_id: str) -> list[Any]:
    """Every PaymentIntent on the server carrying this settlement id (full scan)."""
    found: list[Any] = []
    params: dict[str, Any] = {"limit": 100}
    while True:
        page = await raw.v1.payment_intents.list_async(params)  # type: ignore[arg-type]
        found.extend(
            pi for pi in page.data if pi.to_dict()["metadata"].get("settlement_id") == settlement_id
        )
        if not page.has_more:
            return found
        params["starting_after"] = page.data[-1].id


# --------------------------------------------------------------------------------------------
# lock / release / refund
# --------------------------------------------------------------------------------------------


async def test_authorize_holds_the_amount_with_manual_capture(
    stripe_gateway: StripeGateway, saved_card: CardFactory, stripe_raw: stripe.StripeClient
) -> None:
    card = await saved_card()
    sid, intent = new_id(), new_id()

    state = await stripe_gateway.authorize(
        sid, Decimal("12.34"), card.customer, card.payment_method, {"buyer": "b1"}, intent_id=intent
    )

    assert state.status is PaymentStatus.AUTHORIZED
    assert state.stripe_status == "requires_capture"
    assert state.amount_minor == 1234
    assert state.amount == Decimal("12.34")
    assert state.currency == "usd"
    assert (state.settlement_id, state.intent_id) == (sid, intent)
    assert state.metadata["buyer"] == "b1"
    assert state.customer == card.customer
    assert state.payment_method == card.payment_method
    assert state.latest_charge_id is not None
    assert state.authorization_expires_at == state.created + AUTHORIZATION_VALIDITY
    raw = await stripe_raw.v1.payment_intents.retrieve_async(state.payment_intent_id)
    assert raw.capture_method == "manual"
    assert raw.amount == 1234
    assert await stripe_gateway.retrieve(state.payment_intent_id) == state


async def test_capture_releases_the_authorised_amount(
    stripe_gateway: StripeGateway, saved_card: CardFactory
) -> None:
    card = await saved_card()
    sid = new_id()
    locked = await stripe_gateway.authorize(
        sid, Decimal("20.00"), card.customer, card.payment_method
    )

    captured = await stripe_gateway.capture(sid, locked.payment_intent_id)

    assert captured.status is PaymentStatus.CAPTURED
    assert captured.stripe_status == "succeeded"
    assert captured.authorization_expires_at is None
    assert (await stripe_gateway.retrieve(locked.payment_intent_id)).status is (
        PaymentStatus.CAPTURED
    )


async def test_cancel_voids_the_authorisation(
    stripe_gateway: StripeGateway, saved_card: CardFactory
) -> None:
    card = await saved_card()
    sid = new_id()
    locked = await stripe_gateway.authorize(sid, Decimal("5"), card.customer, card.payment_method)

    canceled = await stripe_gateway.cancel(sid, locked.payment_intent_id)

    assert canceled.status is PaymentStatus.CANCELED
    assert (await stripe_gateway.retrieve(locked.payment_intent_id)).stripe_status == "canceled"


async def test_refund_after_capture_refunds_once_even_with_a_new_key(
    stripe_gateway: StripeGateway, saved_card: CardFactory, stripe_raw: stripe.StripeClient
) -> None:
    card = await saved_card()
    sid = new_id()
    locked = await stripe_gateway.authorize(
        sid, Decimal("9.99"), card.customer, card.payment_method
    )
    await stripe_gateway.capture(sid, locked.payment_intent_id)

    refund = await stripe_gateway.refund_captured(sid, locked.payment_intent_id)
    again = await stripe_gateway.refund_captured(
        sid, locked.payment_intent_id, idempotency_key=f"settlement-{sid}-refund-after-expiry"
    )

    assert refund.status == "succeeded"
    assert refund.amount_minor == 999
    assert refund.payment_intent_id == locked.payment_intent_id
    assert again.refund_id == refund.refund_id
    refunds = await stripe_raw.v1.refunds.list_async({"payment_intent": locked.payment_intent_id})
    assert [r.id for r in refunds.data] == [refund.refund_id]


async def test_every_step_carries_a_key_derived_from_the_settlement(
    stripe_gateway: StripeGateway, saved_card: CardFactory, localstripe_url: str
) -> None:
    card = await saved_card()
    sid = new_id()
    a = await stripe_gateway.authorize(sid, Decimal("1.00"), card.customer, card.payment_method)
    await stripe_gateway.capture(sid, a.payment_intent_id)
    await stripe_gateway.refund_captured(sid, a.payment_intent_id)
    sid2 = new_id()
    b = await stripe_gateway.authorize(sid2, Decimal("1.00"), card.customer, card.payment_method)
    await stripe_gateway.cancel(sid2, b.payment_intent_id)

    sent = [
        (r["path"], r["idempotency_key"])
        for r in await localstripe_requests(localstripe_url)
        if sid in (r["idempotency_key"] or "") or sid2 in (r["idempotency_key"] or "")
    ]
    assert sent == [
        ("/v1/payment_intents", f"settlement-{sid}-lock"),
        (f"/v1/payment_intents/{a.payment_intent_id}/capture", f"settlement-{sid}-capture"),
        ("/v1/refunds", f"settlement-{sid}-refund"),
        ("/v1/payment_intents", f"settlement-{sid2}-lock"),
        (f"/v1/payment_intents/{b.payment_intent_id}/cancel", f"settlement-{sid2}-cancel"),
    ]
    assert idempotency_key(sid, "capture") == f"settlement-{sid}-capture"
    with pytest.raises(ValueError, match="unknown Stripe step"):
        idempotency_key(sid, "charge")


async def test_retried_lock_creates_one_payment_intent(
    stripe_gateway: StripeGateway, saved_card: CardFactory, stripe_raw: stripe.StripeClient
) -> None:
    card = await saved_card()
    sid = new_id()

    first = await stripe_gateway.authorize(sid, Decimal("3.50"), card.customer, card.payment_method)
    # A crash after the call, then the same step again (sequentially and concurrently).
    again = await stripe_gateway.authorize(sid, Decimal("3.50"), card.customer, card.payment_method)
    both = await asyncio.gather(
        stripe_gateway.authorize(sid, Decimal("3.50"), card.customer, card.payment_method),
        stripe_gateway.authorize(sid, Decimal("3.50"), card.customer, card.payment_method),
    )

    assert {s.payment_intent_id for s in (first, again, *both)} == {first.payment_intent_id}
    assert len(await payment_intents_for(stripe_raw, sid)) == 1


async def test_same_key_with_a_different_amount_is_an_idempotency_conflict(
    stripe_gateway: StripeGateway, saved_card: CardFactory, stripe_raw: stripe.StripeClient
) -> None:
    card = await saved_card()
    sid = new_id()
    await stripe_gateway.authorize(sid, Decimal("3.50"), card.customer, card.payment_method)

    with pytest.raises(StripeIdempotencyConflictError) as info:
        await stripe_gateway.authorize(sid, Decimal("3.51"), card.customer, card.payment_method)

    assert info.value.failure_code is FailureCode.SETTLEMENT_FAILED
    assert not info.value.retryable
    assert len(await payment_intents_for(stripe_raw, sid)) == 1


async def test_capture_converges_when_already_captured(
    stripe_gateway: StripeGateway, saved_card: CardFactory, stripe_raw: stripe.StripeClient
) -> None:
    card = await saved_card()
    sid = new_id()
    locked = await stripe_gateway.authorize(sid, Decimal("4"), card.customer, card.payment_method)
    # Captured out of band (dashboard, or our own earlier call whose key has expired).
    await stripe_raw.v1.payment_intents.capture_async(locked.payment_intent_id)

    state = await stripe_gateway.capture(sid, locked.payment_intent_id)

    assert state.status is PaymentStatus.CAPTURED


async def test_cancel_converges_when_already_canceled(
    stripe_gateway: StripeGateway, saved_card: CardFactory, stripe_raw: stripe.StripeClient
) -> None:
    card = await saved_card()
    sid = new_id()
    locked = await stripe_gateway.authorize(sid, Decimal("4"), card.customer, card.payment_method)
    await stripe_raw.v1.payment_intents.cancel_async(locked.payment_intent_id)

    assert (await stripe_gateway.cancel(sid, locked.payment_intent_id)).status is (
        PaymentStatus.CANCELED
    )


async def test_capture_after_cancel_reports_the_actual_state(
    stripe_gateway: StripeGateway, saved_card: CardFactory
) -> None:
    card = await saved_card()
    sid = new_id()
    locked = await stripe_gateway.authorize(sid, Decimal("4"), card.customer, card.payment_method)
    await stripe_gateway.cancel(sid, locked.payment_intent_id)

    with pytest.raises(StripeUnexpectedStateError) as info:
        await stripe_gateway.capture(sid, locked.payment_intent_id)

    assert info.value.state.status is PaymentStatus.CANCELED
    assert (await stripe_gateway.retrieve(locked.payment_intent_id)).status is (
        PaymentStatus.CANCELED
    )


async def test_capture_of_unknown_payment_intent_is_a_request_error(
    stripe_gateway: StripeGateway,
) -> None:
    with pytest.raises(StripeRequestError) as info:
        await stripe_gateway.capture(new_id(), "pi_doesnotexist00")
    assert info.value.http_status == 404
    assert not isinstance(info.value, StripeUnexpectedStateError)


# --------------------------------------------------------------------------------------------
# declines and amounts
# --------------------------------------------------------------------------------------------


async def test_declined_card_raises_a_typed_decline_and_leaves_a_failed_intent(
    stripe_gateway: StripeGateway, saved_card: CardFactory
) -> None:
    # 4000000000000341: attaching succeeds, charging is declined (Stripe's and localstripe's
    # test card for a saved card that fails later; localstripe declines 4000000000000002 at
    # attach time, see test_card_declined_at_attach_never_reaches_the_gateway).
    card = await saved_card("4000000000000341")
    sid = new_id()

    with pytest.raises(StripeDeclinedError) as info:
        await stripe_gateway.authorize(sid, Decimal("10"), card.customer, card.payment_method)

    err = info.value
    assert err.failure_code is FailureCode.FAILED_ESCROW
    assert err.decline_code == "card_declined"
    assert err.http_status == 402
    assert not err.retryable
    [failed] = await stripe_gateway.find_by_settlement(sid)
    assert failed.status is PaymentStatus.FAILED
    assert failed.last_error_code == "card_declined"


async def test_card_declined_at_attach_never_reaches_the_gateway(
    saved_card: CardFactory,
) -> None:
    with pytest.raises(stripe.CardError) as info:
        await saved_card("4000000000000002")
    assert info.value.code == "card_declined"


async def test_card_requiring_authentication_is_declined_off_session(
    stripe_gateway: StripeGateway, saved_card: CardFactory
) -> None:
    card = await saved_card("4000002500003155")  # 3-D Secure required

    with pytest.raises(StripeDeclinedError) as info:
        await stripe_gateway.authorize(new_id(), Decimal("10"), card.customer, card.payment_method)

    assert info.value.decline_code == "authentication_required"
    assert info.value.payment_intent_id is not None
    assert info.value.failure_code is FailureCode.FAILED_ESCROW


async def test_insufficient_funds_decline_maps_to_insufficient_escrow() -> None:
    body = {
        "error": {
            "type": "card_error",
            "code": "card_declined",
            "decline_code": "insufficient_funds",
            "payment_intent": {"id": "pi_123"},
        }
    }
    exc = stripe.CardError(  # type: ignore[no-untyped-call]
        "Your card has insufficient funds.", None, "card_declined", json_body=body, http_status=402
    )

    err = _translate(exc, mutating=True)

    assert isinstance(err, StripeDeclinedError)
    assert err.failure_code is FailureCode.INSUFFICIENT_ESCROW
    assert err.payment_intent_id == "pi_123"


def _dead_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again: nothing listens there


async def test_below_minimum_is_refused_before_any_request() -> None:
    dead = f"http://127.0.0.1:{_dead_port()}"
    async with StripeGateway(STRIPE_KEY, api_base=dead, max_network_retries=0) as gw:
        with pytest.raises(AmountBelowRailMinimumError) as info:
            await gw.authorize(new_id(), Decimal("0.49"), "cus_x", "pm_x")
        assert info.value.failure_code is FailureCode.AMOUNT_BELOW_RAIL_MINIMUM
        # Control: an amount above the minimum does try the (dead) server.
        with pytest.raises(StripeTransientError) as transient:
            await gw.authorize(new_id(), Decimal("0.50"), "cus_x", "pm_x")
        assert transient.value.retryable
        assert transient.value.outcome_unknown


async def test_below_minimum_sends_nothing_to_the_server(
    stripe_gateway: StripeGateway, saved_card: CardFactory, localstripe_url: str
) -> None:
    card = await saved_card()
    before = len(await localstripe_requests(localstripe_url))
    with pytest.raises(AmountBelowRailMinimumError):
        await stripe_gateway.authorize(
            new_id(), Decimal("0.004"), card.customer, card.payment_method
        )
    assert len(await localstripe_requests(localstripe_url)) == before


async def test_zero_decimal_currency_is_sent_in_whole_units(
    stripe_gateway: StripeGateway, saved_card: CardFactory
) -> None:
    card = await saved_card()
    state = await stripe_gateway.authorize(
        new_id(), Decimal("500"), card.customer, card.payment_method, currency="JPY"
    )
    assert (state.amount_minor, state.currency, state.amount) == (500, "jpy", Decimal("500"))


def test_currency_without_a_known_minimum_is_refused_at_construction() -> None:
    with pytest.raises(UnsupportedCurrencyError):
        StripeGateway(STRIPE_KEY, currency="xyz")


async def test_bad_api_key_is_a_configuration_error(localstripe_url: str) -> None:
    async with StripeGateway("rk_not_a_secret_key", api_base=localstripe_url) as gw:
        with pytest.raises(StripeConfigurationError) as info:
            await gw.retrieve("pi_whatever000000")
    assert info.value.http_status == 401


# --------------------------------------------------------------------------------------------
# reconciliation
# --------------------------------------------------------------------------------------------


async def test_lock_is_found_by_settlement_after_a_crash(
    saved_card: CardFactory, localstripe_url: str
) -> None:
    card = await saved_card()
    sid = new_id()
    async with StripeGateway(STRIPE_KEY, api_base=localstripe_url) as before_crash:
        sent = await before_crash.authorize(
            sid, Decimal("7.77"), card.customer, card.payment_method
        )
        del sent  # the process dies before recording the PaymentIntent id

    async with StripeGateway(STRIPE_KEY, api_base=localstripe_url) as after_restart:
        [found] = await after_restart.find_by_settlement(sid)
        assert found.status is PaymentStatus.AUTHORIZED
        assert found.amount == Decimal("7.77")
        # Replaying the step with the same arguments returns the very same PaymentIntent.
        replay = await after_restart.authorize(
            sid, Decimal("7.77"), card.customer, card.payment_method
        )
        assert replay.payment_intent_id == found.payment_intent_id
        assert await after_restart.find_by_settlement(new_id()) == []


# --------------------------------------------------------------------------------------------
# webhooks
# --------------------------------------------------------------------------------------------


def sign(payload: bytes, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    ts = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def event_payload(status: str = "succeeded", pi_id: str = "pi_test123") -> bytes:
    event = {
        "id": "evt_1",
        "object": "event",
        "type": "payment_intent.succeeded",
        "created": int(time.time()),
        "data": {
            "object": {
                "id": pi_id,
                "object": "payment_intent",
                "amount": 1234,
                "currency": "usd",
                "status": status,
                "created": int(time.time()),
                "metadata": {"settlement_id": "s-1", "intent_id": "i-1"},
                "latest_charge": "ch_1",
                "customer": "cus_1",
                "payment_method": "pm_1",
            }
        },
    }
    return json.dumps(event).encode()


def test_webhook_with_a_good_signature_is_accepted() -> None:
    payload = event_payload()
    event = StripeGateway.verify_webhook(payload, sign(payload), WEBHOOK_SECRET)
    assert event["type"] == "payment_intent.succeeded"
    state = StripeGateway.payment_state_from_event(event)
    assert state is not None
    assert state.status is PaymentStatus.CAPTURED
    assert (state.payment_intent_id, state.settlement_id) == ("pi_test123", "s-1")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "garbage",
        "t=notanumber,v1=abc",
        "t=1700000000",  # no v1 signature
        "t=1700000000,v0=deadbeef",
    ],
)
def test_webhook_with_a_missing_or_malformed_signature_is_rejected(header: str | None) -> None:
    with pytest.raises(StripeWebhookError):
        StripeGateway.verify_webhook(event_payload(), header, WEBHOOK_SECRET)


def test_webhook_signed_with_another_secret_is_rejected() -> None:
    payload = event_payload()
    with pytest.raises(StripeWebhookError, match="signature"):
        StripeGateway.verify_webhook(payload, sign(payload, "whsec_other"), WEBHOOK_SECRET)


def test_webhook_with_a_tampered_body_is_rejected() -> None:
    payload = event_payload()
    header = sign(payload)
    tampered = payload.replace(b"1234", b"1")
    with pytest.raises(StripeWebhookError):
        StripeGateway.verify_webhook(tampered, header, WEBHOOK_SECRET)


def test_webhook_with_a_stale_timestamp_is_rejected() -> None:
    payload = event_payload()
    stale = sign(payload, timestamp=int(time.time()) - 301)
    with pytest.raises(StripeWebhookError, match="tolerance"):
        StripeGateway.verify_webhook(payload, stale, WEBHOOK_SECRET)
    # Within the tolerance it is fine.
    recent = sign(payload, timestamp=int(time.time()) - 200)
    assert StripeGateway.verify_webhook(payload, recent, WEBHOOK_SECRET)["id"] == "evt_1"


@pytest.mark.parametrize("payload", [b"not json", b"[]", b'{"id": "evt_1"}', b"\xff\xfe"])
def test_webhook_that_is_not_an_event_is_rejected_even_if_signed(payload: bytes) -> None:
    with pytest.raises(StripeWebhookError):
        StripeGateway.verify_webhook(payload, sign(payload), WEBHOOK_SECRET)


def test_webhook_without_a_configured_secret_is_a_configuration_error() -> None:
    payload = event_payload()
    with pytest.raises(StripeConfigurationError):
        StripeGateway.verify_webhook(payload, sign(payload), "")


def test_non_payment_intent_events_carry_no_payment_state() -> None:
    assert StripeGateway.payment_state_from_event({"type": "charge.refunded", "data": {}}) is None


class _Receiver(BaseHTTPRequestHandler):
    inbox: queue.Queue[tuple[dict[str, str], bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.inbox.put((dict(self.headers.items()), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def webhook_receiver() -> Iterator[tuple[str, queue.Queue[tuple[dict[str, str], bytes]]]]:
    inbox: queue.Queue[tuple[dict[str, str], bytes]] = queue.Queue()
    handler = type("Receiver", (_Receiver,), {"inbox": inbox})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/webhooks/stripe", inbox
    server.shutdown()
    server.server_close()


async def test_webhook_signed_by_the_server_verifies_end_to_end(
    stripe_gateway: StripeGateway,
    saved_card: CardFactory,
    localstripe_url: str,
    webhook_receiver: tuple[str, queue.Queue[tuple[dict[str, str], bytes]]],
) -> None:
    url, inbox = webhook_receiver
    hook_id = f"hook_{uuid.uuid4().hex[:12]}"
    async with httpx.AsyncClient(timeout=5) as client:
        resp = await client.post(
            localstripe_url + f"/_config/webhooks/{hook_id}",
            data={"url": url, "secret": WEBHOOK_SECRET, "events[]": "payment_intent.succeeded"},
        )
    assert resp.status_code == 200
    card = await saved_card()
    sid = new_id()
    locked = await stripe_gateway.authorize(
        sid, Decimal("2.00"), card.customer, card.payment_method
    )
    await stripe_gateway.capture(sid, locked.payment_intent_id)

    deadline = time.monotonic() + HANG_GUARD_S
    while True:  # other tests' events may arrive too: wait for ours
        remaining = deadline - time.monotonic()
        assert remaining > 0, "localstripe did not deliver the webhook"
        headers, body = await asyncio.to_thread(inbox.get, True, remaining)
        event = StripeGateway.verify_webhook(body, headers.get("Stripe-Signature"), WEBHOOK_SECRET)
        state = StripeGateway.payment_state_from_event(event)
        if state is not None and state.payment_intent_id == locked.payment_intent_id:
            break
    assert event["type"] == "payment_intent.succeeded"
    assert state.status is PaymentStatus.CAPTURED
    assert state.settlement_id == sid
    with pytest.raises(StripeWebhookError):
        StripeGateway.verify_webhook(body, headers.get("Stripe-Signature"), "whsec_wrong")
    assert timedelta(0) <= state.created - locked.created <= timedelta(seconds=5)
