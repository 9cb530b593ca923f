"""The negotiator's decisions, branch by branch, without HTTP."""

from __future__ import annotations

import io
import json
from decimal import Decimal
from typing import Any

import pytest
from fixtures.provider import (
    BUYER,
    NOW,
    OTHER_BUYER,
    OTHER_PROVIDER,
    PROVIDER,
    FakeClock,
    accept_message,
    bid_message,
    intent_message,
    reject_message,
    signed,
)
from pact_provider.errors import BadEnvelopeError, SettlementUnavailableError
from pact_provider.identity import ProviderIdentity
from pact_provider.negotiation.pricing import DEFAULT_BOOK, PriceBook
from pact_provider.negotiation.service import (
    Decision,
    Delivery,
    Negotiator,
    Policy,
    SettledAgreement,
    no_fulfilment,
)
from pact_provider.observability import make_logger
from pact_provider.settlement_client import SettlementRecord, SettlementRefusedError
from pact_schema import Keypair, message_hash_hex, parse_message, sign_message, verify_envelope
from pact_schema.quote import verify_carried_quote


class Gateway:
    def __init__(self, outcome: SettlementRecord | Exception | None = None) -> None:
        self.outcome = outcome
        self.calls: list[tuple[dict[str, Any], str, dict[str, Any] | None]] = []
        self.rails: list[str | None] = []
        self.lookups: list[tuple[str, str]] = []

    async def settle(
        self,
        accept_envelope: dict[str, Any],
        *,
        idempotency_key: str,
        provider_quote: dict[str, Any] | None = None,
        rail: str | None = None,
    ) -> SettlementRecord:
        self.calls.append((accept_envelope, idempotency_key, provider_quote))
        self.rails.append(rail)
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome or SettlementRecord("stl-1", "locked", "ledger", "0.00008", "0")

    async def find(self, buyer_key: str | None, intent_id: str) -> SettlementRecord | None:
        """What settlement holds: the last settled record, once an ACCEPT was taken."""
        self.lookups.append((buyer_key, intent_id))
        if not self.calls or isinstance(self.outcome, Exception):
            return None
        return self.outcome or SettlementRecord("stl-1", "locked", "ledger", "0.00008", "0")

    async def readiness(self) -> str:
        return "ok"

    async def aclose(self) -> None:
        return None


def make(
    clock: FakeClock,
    *,
    gateway: Gateway | None = None,
    no_settlement: bool = False,
    book: PriceBook = DEFAULT_BOOK,
    trusted: frozenset[str] | None = None,
    after_settlement: Any = no_fulfilment,
    **policy: Any,
) -> Negotiator:
    return Negotiator(
        identity=ProviderIdentity(
            PROVIDER, trusted or frozenset({PROVIDER.public_key_b58}), ephemeral=False
        ),
        price_book=book,
        policy=Policy.defaults(**policy),
        clock=clock,
        settlement=None if no_settlement else (gateway or Gateway()),
        log=make_logger("DEBUG", io.StringIO()),
        after_settlement=after_settlement,
    )


async def decide(negotiator: Negotiator, message: dict[str, Any], key: Keypair = BUYER) -> Decision:
    return await negotiator.handle_verified(verify_envelope(signed(message, key)))


async def quote_for(negotiator: Negotiator, **intent: Any) -> dict[str, Any]:
    decision = await decide(negotiator, intent_message(negotiator.clock(), **intent))
    assert decision.outcome == "ASK", decision.envelope["message"]
    return decision.envelope


def assert_reject(decision: Decision, code: str) -> dict[str, Any]:
    message = decision.envelope["message"]
    assert decision.outcome == "REJECT", message
    assert message["type"] == "REJECT"
    assert message["code"] == code, message["reason"]
    assert decision.code == code
    parse_message(message)  # a valid pact/1.0 REJECT
    return message


# --- INTENT ------------------------------------------------------------------------------


async def test_intent_gets_ask_bound_to_buyer_round_one_and_firm_for_policy_window(
    clock: FakeClock,
) -> None:
    decision = await decide(make(clock), intent_message(clock.now))
    ask = decision.envelope["message"]
    assert decision.outcome == "ASK"
    assert decision.envelope["signer_public_key_b58"] == PROVIDER.public_key_b58
    assert ask["type"] == "ASK"
    assert ask["intent_id"] == "intent-1"
    assert ask["price"] == 0.00008
    assert ask["bond_required"] == 0.00016
    assert ask["unit"] == "request"
    assert ask["valid_for_ms"] == 20_000
    assert ask["sent_at_ms"] == clock.now
    assert ask["expires_at_ms"] == ask["sent_at_ms"] + ask["valid_for_ms"]
    assert ask["buyer_public_key_b58"] == BUYER.public_key_b58
    assert ask["round"] == 1
    assert ask["intent"] == "weather.data"
    assert ask["settlement_mode"] == "hash_reveal"
    assert ask["list_price"] == 0.00008
    parse_message(ask)


@pytest.mark.parametrize(
    ("intent_type", "expected"),
    [
        ("weather.data", "0.00008"),
        ("compute.inference", "0.00012"),
        ("data.query", "0.00005"),
        ("anything.else", "0.0001"),
    ],
)
async def test_intent_price_comes_from_the_price_book(
    clock: FakeClock, intent_type: str, expected: str
) -> None:
    decision = await decide(make(clock), intent_message(clock.now, intent=intent_type))
    assert decision.price == Decimal(expected)


FAST_BOOK = PriceBook(
    DEFAULT_BOOK.prices,
    DEFAULT_BOOK.default_price,
    restricted=False,
    latencies={"weather.data": 40},
)


@pytest.mark.parametrize(
    ("book", "constraints", "urgent", "expected"),
    [
        (FAST_BOOK, {"latency_ms": 5_000, "freshness_sec": 10}, None, "0.000096"),  # x1.2
        (DEFAULT_BOOK, {"latency_ms": 50, "freshness_sec": 9}, None, "0.000088"),  # x1.1
        (DEFAULT_BOOK, {"latency_ms": 50, "freshness_sec": 10}, True, "0.000092"),  # x1.15
        (FAST_BOOK, {"latency_ms": 0, "freshness_sec": 0}, True, "0.00012144"),  # all three
        (DEFAULT_BOOK, {"latency_ms": 50, "freshness_sec": 10}, False, "0.00008"),
        # the buyer's latency demand changes neither the price nor the promise
        (DEFAULT_BOOK, {"latency_ms": 0, "freshness_sec": 10}, None, "0.00008"),
    ],
)
async def test_intent_price_is_raised_exactly_in_decimal_for_tight_constraints(
    clock: FakeClock,
    book: PriceBook,
    constraints: dict[str, int],
    urgent: bool | None,
    expected: str,
) -> None:
    message = intent_message(clock.now, constraints=constraints, urgent=urgent)
    if urgent is None:
        del message["urgent"]
    decision = await decide(make(clock, book=book), message)
    assert decision.price == Decimal(expected)
    assert decision.envelope["message"]["price"] == float(expected)
    promised = book.offer("weather.data")
    assert promised is not None
    assert decision.envelope["message"]["latency_ms"] == promised.latency_ms


@pytest.mark.parametrize("demanded", [0, 1, 49, 4_999, 60_000])
async def test_the_ask_promises_the_sellers_latency_whatever_the_intent_demands(
    clock: FakeClock, demanded: int
) -> None:
    message = intent_message(clock.now, constraints={"latency_ms": demanded, "freshness_sec": 30})
    ask = (await decide(make(clock), message)).envelope["message"]
    assert ask["latency_ms"] == DEFAULT_BOOK.default_latency_ms
    assert ask["min_delivery_window_ms"] == Policy.defaults().min_delivery_window_ms


async def test_intent_over_max_price_is_rejected_never_asked(clock: FakeClock) -> None:
    message = intent_message(
        clock.now, max_price=0.00008, constraints={"latency_ms": 0, "freshness_sec": 0}
    )
    reject = assert_reject(await decide(make(clock), message), "PRICE_ABOVE_MAX")
    assert "0.000088" in reject["reason"]


async def test_intent_at_exactly_max_price_gets_ask(clock: FakeClock) -> None:
    decision = await decide(make(clock), intent_message(clock.now, max_price=0.00008))
    assert decision.outcome == "ASK"


async def test_expired_intent_is_rejected(clock: FakeClock) -> None:
    message = intent_message(clock.now - 60_000)  # expires exactly now
    assert_reject(await decide(make(clock), message), "INTENT_EXPIRED")


@pytest.mark.parametrize("skew", [5_001, -5_001, 3_600_000])
async def test_intent_beyond_clock_skew_is_rejected(clock: FakeClock, skew: int) -> None:
    message = intent_message(clock.now + skew)
    assert_reject(await decide(make(clock), message), "CLOCK_SKEW_TOO_LARGE")


@pytest.mark.parametrize("skew", [5_000, -5_000, 0])
async def test_intent_within_clock_skew_is_quoted(clock: FakeClock, skew: int) -> None:
    decision = await decide(make(clock), intent_message(clock.now + skew))
    assert decision.outcome == "ASK"


async def test_unknown_intent_type_is_refused_when_the_operator_restricts_intents(
    clock: FakeClock,
) -> None:
    book = PriceBook(DEFAULT_BOOK.prices, DEFAULT_BOOK.default_price, restricted=True)
    negotiator = make(clock, book=book)
    assert_reject(
        await decide(negotiator, intent_message(clock.now, intent="crypto.mining")),
        "INTENT_NOT_ALLOWED",
    )
    assert (await decide(negotiator, intent_message(clock.now))).outcome == "ASK"


async def test_settlement_mode_not_offered_is_refused(clock: FakeClock) -> None:
    negotiator = make(clock, settlement_modes=frozenset({"hash_reveal"}))
    assert_reject(
        await decide(negotiator, intent_message(clock.now, settlement_mode="streaming")),
        "SETTLEMENT_MODE_NOT_ALLOWED",
    )


async def test_intent_without_expires_at_gets_missing_expires_at(clock: FakeClock) -> None:
    message = intent_message(clock.now, expires_at_ms=...)
    reject = assert_reject(await decide(make(clock), message), "MISSING_EXPIRES_AT")
    assert reject["intent_id"] == "intent-1"


@pytest.mark.parametrize(
    "override",
    [
        {"max_price": "0.0002"},
        {"max_price": 0},
        {"constraints": {"latency_ms": -1, "freshness_sec": 1}},
        {"settlement_mode": "cash"},
        {"protocol_version": "pact/2.0"},
        {"scope": 5},
        {"expires_at_ms": NOW - 1},
        {"urgent": "maybe"},
    ],
)
async def test_schema_errors_in_a_signed_intent_get_schema_validation_failed(
    clock: FakeClock, override: dict[str, Any]
) -> None:
    reject = assert_reject(
        await decide(make(clock), intent_message(clock.now, **override)),
        "SCHEMA_VALIDATION_FAILED",
    )
    assert reject["intent_id"] == "intent-1"


async def test_schema_error_without_a_usable_intent_id_answers_for_unknown(
    clock: FakeClock,
) -> None:
    reject = assert_reject(
        await decide(make(clock), intent_message(clock.now, intent_id=...)),
        "SCHEMA_VALIDATION_FAILED",
    )
    assert reject["intent_id"] == "unknown"


@pytest.mark.parametrize("kind", ["ASK", "COMMIT", "REVEAL"])
async def test_messages_a_provider_does_not_take_get_unexpected_message(
    clock: FakeClock, kind: str
) -> None:
    negotiator = make(clock)
    messages = {
        "ASK": (await quote_for(negotiator))["message"],
        "COMMIT": {
            **reject_message(clock.now),
            "type": "COMMIT",
            "commit_hash_hex": "ab" * 32,
        },
        "REVEAL": {
            **reject_message(clock.now),
            "type": "REVEAL",
            "payload_b64": "",
            "nonce_b64": "",
        },
    }
    message = {k: v for k, v in messages[kind].items() if k not in ("reason", "code")}
    assert_reject(await decide(negotiator, message), "UNEXPECTED_MESSAGE")


# --- BID -----------------------------------------------------------------------------------


async def test_bids_go_round_one_two_three_then_round_four_is_refused(clock: FakeClock) -> None:
    negotiator = make(clock, book=FAST_BOOK)
    quote = await quote_for(negotiator)
    prices = [quote["message"]["price"]]
    for expected_round in (2, 3):
        decision = await decide(negotiator, bid_message(quote, 0.00008, clock.now))
        assert decision.outcome == "ASK", decision.envelope["message"]
        quote = decision.envelope
        assert quote["message"]["round"] == expected_round
        assert quote["message"]["list_price"] == 0.000096
        assert quote["message"]["buyer_public_key_b58"] == BUYER.public_key_b58
        prices.append(quote["message"]["price"])
    # meet halfway each round: 0.000096 -> 0.000088 -> 0.000084
    assert prices == [0.000096, 0.000088, 0.000084]
    reject = assert_reject(
        await decide(negotiator, bid_message(quote, 0.00008, clock.now)), "ROUND_EXCEEDED"
    )
    assert reject["intent_id"] == "intent-1"


async def test_counter_ask_is_verifiable_by_any_replica_and_settlement(clock: FakeClock) -> None:
    negotiator = make(clock)
    quote = await quote_for(negotiator)
    counter = (await decide(negotiator, bid_message(quote, 0.00007, clock.now))).envelope
    carrier = verify_envelope(signed(accept_message(counter, clock.now)))
    terms = verify_carried_quote(
        carrier, trusted_provider_keys={PROVIDER.public_key_b58}, now_ms=clock.now
    )
    assert terms.round == 2
    assert terms.price == Decimal("0.000075")
    assert terms.bond == Decimal("0.00015")


async def test_bid_below_floor_is_countered_at_halfway_to_the_floor_never_below(
    clock: FakeClock,
) -> None:
    negotiator = make(clock, price_floor_ratio=Decimal("0.5"))
    quote = await quote_for(negotiator)  # 0.00008, floor 0.00004
    counter = await decide(negotiator, bid_message(quote, 0.000001, clock.now))
    assert counter.price == Decimal("0.00006")
    again = await decide(negotiator, bid_message(counter.envelope, 0.000001, clock.now))
    assert again.price == Decimal("0.00005")


async def test_bid_at_or_above_the_ask_keeps_the_ask(clock: FakeClock) -> None:
    negotiator = make(clock)
    quote = await quote_for(negotiator)
    counter = await decide(negotiator, bid_message(quote, 0.001, clock.now))
    assert counter.price == Decimal("0.00008")
    assert counter.envelope["message"]["round"] == 2


async def test_bid_without_quote_is_rejected_quote_missing(clock: FakeClock) -> None:
    negotiator = make(clock)
    quote = await quote_for(negotiator)
    assert_reject(
        await decide(negotiator, bid_message(quote, 0.00007, clock.now, quote=...)),
        "QUOTE_MISSING",
    )


async def test_bid_with_tampered_quote_is_rejected(clock: FakeClock) -> None:
    negotiator = make(clock)
    quote = await quote_for(negotiator)
    tampered = {**quote, "message": {**quote["message"], "round": 0}}
    assert_reject(await decide(negotiator, bid_message(tampered, 0.00007)), "QUOTE_INVALID")


async def test_bid_carrying_another_providers_quote_is_untrusted(clock: FakeClock) -> None:
    negotiator = make(clock)
    quote = await quote_for(negotiator)
    forged = sign_message(quote["message"], OTHER_PROVIDER, signed_at_ms=clock.now)
    assert_reject(await decide(negotiator, bid_message(forged, 0.00007)), "UNTRUSTED_ISSUER")


async def test_bid_from_another_buyer_is_a_failed_identity(clock: FakeClock) -> None:
    negotiator = make(clock)
    quote = await quote_for(negotiator)
    assert_reject(
        await decide(negotiator, bid_message(quote, 0.00007), key=OTHER_BUYER), "FAILED_IDENTITY"
    )


async def test_bid_on_expired_quote_is_rejected(clock: FakeClock) -> None:
    negotiator = make(clock)
    quote = await quote_for(negotiator)
    clock.advance(20_000 + 1_001)  # past validity and the 1 s replica grace
    assert_reject(await decide(negotiator, bid_message(quote, 0.00007, clock.now)), "QUOTE_EXPIRED")


async def test_bid_signed_by_previous_provider_key_is_honoured_after_rotation(
    clock: FakeClock,
) -> None:
    old = make(clock)
    quote = await quote_for(old)
    rotated = Negotiator(
        identity=ProviderIdentity(
            OTHER_PROVIDER,
            frozenset({OTHER_PROVIDER.public_key_b58, PROVIDER.public_key_b58}),
            ephemeral=False,
        ),
        price_book=DEFAULT_BOOK,
        policy=Policy.defaults(),
        clock=clock,
        settlement=Gateway(),
        log=make_logger("DEBUG", io.StringIO()),
    )
    counter = await decide(rotated, bid_message(quote, 0.00007, clock.now))
    assert counter.outcome == "ASK"
    assert counter.envelope["signer_public_key_b58"] == OTHER_PROVIDER.public_key_b58


async def test_expired_bid_is_rejected(clock: FakeClock) -> None:
    negotiator = make(clock)
    quote = await quote_for(negotiator)
    message = bid_message(
        quote, 0.00007, clock.now - 10_000, expires_at_ms=clock.now, valid_for_ms=10_000
    )
    assert_reject(await decide(negotiator, message), "INTENT_EXPIRED")


# --- ACCEPT ---------------------------------------------------------------------------------


async def test_the_buyers_signed_rail_choice_wins_over_the_configured_default(
    clock: FakeClock,
) -> None:
    gateway = Gateway()
    negotiator = make(clock, gateway=gateway, settlement_rail="ledger")
    quote = await quote_for(negotiator)
    await negotiator.handle_verified(verify_envelope(signed(accept_message(quote, clock.now))))
    await negotiator.handle_verified(
        verify_envelope(signed(accept_message(quote, clock.now, rail="stripe")))
    )
    assert gateway.rails == ["ledger", "stripe"]


async def test_good_accept_is_forwarded_with_idempotency_key_and_acknowledged(
    clock: FakeClock,
) -> None:
    gateway = Gateway(SettlementRecord("stl-9", "locked", "ledger", "0.00008", "0.00016"))
    negotiator = make(clock, gateway=gateway)
    quote = await quote_for(negotiator)
    accept = signed(accept_message(quote, clock.now))
    decision = await negotiator.handle_verified(verify_envelope(accept))
    ack = decision.envelope["message"]
    assert decision.outcome == "ACCEPT"
    assert decision.settlement_id == "stl-9"
    envelope, key, provider_quote = gateway.calls[0]
    assert envelope == accept
    assert key == f"accept-{message_hash_hex(accept['message'])}"
    assert provider_quote is None
    assert ack["type"] == "ACCEPT"
    assert ack["intent_id"] == "intent-1"
    for name in (
        "agreed_price",
        "settlement_mode",
        "proof_type",
        "challenge_window_ms",
        "delivery_deadline_ms",
    ):
        assert ack[name] == accept["message"][name]
    assert ack["settlement"] == {
        "id": "stl-9",
        "state": "locked",
        "rail": "ledger",
        "amount": "0.00008",
        "bond": "0.00016",
    }
    assert ack["accept_hash_hex"] == message_hash_hex(accept["message"])
    parse_message(ack)


async def test_after_settlement_hook_sees_the_agreement_and_extends_the_ack(
    clock: FakeClock,
) -> None:
    seen: list[SettledAgreement] = []

    async def fulfil(agreement: SettledAgreement) -> Delivery:
        seen.append(agreement)
        return Delivery(agreement.settlement, {"status": "delivered", "commit_hash_hex": "cd" * 32})

    negotiator = make(clock, after_settlement=fulfil)
    quote = await quote_for(negotiator)
    decision = await decide(negotiator, accept_message(quote, clock.now))
    assert decision.envelope["message"]["delivery"]["commit_hash_hex"] == "cd" * 32
    assert seen[0].terms is not None
    assert seen[0].terms.round == 1
    assert seen[0].settlement.id == "stl-1"


async def test_accept_of_a_counter_offer_settles_at_the_countered_price(clock: FakeClock) -> None:
    gateway = Gateway()
    negotiator = make(clock, gateway=gateway)
    quote = await quote_for(negotiator)
    counter = (await decide(negotiator, bid_message(quote, 0.00007, clock.now))).envelope
    decision = await decide(negotiator, accept_message(counter, clock.now))
    assert decision.outcome == "ACCEPT"
    assert decision.price == Decimal("0.000075")
    assert decision.round == 2


async def test_bare_accept_is_rejected_quote_missing(clock: FakeClock) -> None:
    gateway = Gateway()
    negotiator = make(clock, gateway=gateway)
    assert_reject(await decide(negotiator, accept_message(None, clock.now)), "QUOTE_MISSING")
    assert gateway.calls == []


async def test_lenient_mode_takes_a_bare_accept_at_the_highest_possible_price(
    clock: FakeClock,
) -> None:
    gateway = Gateway()
    negotiator = make(clock, gateway=gateway, lenient_accept=True)
    highest = DEFAULT_BOOK.highest_price  # 0.00012 x 1.2 x 1.1 x 1.15
    assert highest == Decimal("0.00018216")
    decision = await decide(negotiator, accept_message(None, clock.now, agreed_price=0.00018216))
    assert decision.outcome == "ACCEPT"
    _, _, provider_quote = gateway.calls[0]
    assert provider_quote is not None
    carrier = verify_envelope(
        signed(accept_message(provider_quote, clock.now, agreed_price=0.00018216))
    )
    terms = verify_carried_quote(
        carrier, trusted_provider_keys={PROVIDER.public_key_b58}, now_ms=clock.now
    )
    assert terms.price == highest
    assert terms.buyer_key == BUYER.public_key_b58


async def test_lenient_mode_still_refuses_a_bare_accept_below_the_highest_price(
    clock: FakeClock,
) -> None:
    gateway = Gateway()
    negotiator = make(clock, gateway=gateway, lenient_accept=True)
    reject = assert_reject(
        await decide(negotiator, accept_message(None, clock.now, agreed_price=0.00008)),
        "QUOTE_MISSING",
    )
    assert "0.00018216" in reject["reason"]
    assert gateway.calls == []


async def test_lenient_mode_refuses_a_settlement_mode_not_offered(clock: FakeClock) -> None:
    negotiator = make(clock, lenient_accept=True, settlement_modes=frozenset({"hash_reveal"}))
    message = accept_message(None, clock.now, agreed_price=0.001, settlement_mode="streaming")
    assert_reject(await decide(negotiator, message), "SETTLEMENT_MODE_NOT_ALLOWED")


async def test_accept_with_tampered_quote_is_rejected(clock: FakeClock) -> None:
    negotiator = make(clock)
    quote = await quote_for(negotiator)
    tampered = {**quote, "message": {**quote["message"], "price": 0.00001}}
    message = accept_message(tampered, clock.now)
    assert_reject(await decide(negotiator, message), "QUOTE_INVALID")


async def test_accept_with_another_providers_quote_is_untrusted(clock: FakeClock) -> None:
    negotiator = make(clock)
    quote = await quote_for(negotiator)
    forged = sign_message(quote["message"], OTHER_PROVIDER, signed_at_ms=clock.now)
    assert_reject(await decide(negotiator, accept_message(forged, clock.now)), "UNTRUSTED_ISSUER")


async def test_accept_by_another_buyer_is_a_failed_identity(clock: FakeClock) -> None:
    gateway = Gateway()
    negotiator = make(clock, gateway=gateway)
    quote = await quote_for(negotiator)
    assert_reject(
        await decide(negotiator, accept_message(quote, clock.now), key=OTHER_BUYER),
        "FAILED_IDENTITY",
    )
    assert gateway.calls == []


async def test_accept_with_lowered_price_is_a_price_mismatch(clock: FakeClock) -> None:
    negotiator = make(clock)
    quote = await quote_for(negotiator)
    message = accept_message(quote, clock.now, agreed_price=0.00007)
    assert_reject(await decide(negotiator, message), "PRICE_MISMATCH")


async def test_accept_with_other_settlement_mode_is_refused(clock: FakeClock) -> None:
    negotiator = make(clock)
    quote = await quote_for(negotiator)
    message = accept_message(quote, clock.now, settlement_mode="streaming")
    assert_reject(await decide(negotiator, message), "SETTLEMENT_MODE_NOT_ALLOWED")


async def test_accept_for_another_intent_id_is_refused(clock: FakeClock) -> None:
    negotiator = make(clock)
    quote = await quote_for(negotiator)
    message = accept_message(quote, clock.now, intent_id="intent-2")
    assert_reject(await decide(negotiator, message), "QUOTE_INVALID")


async def test_accept_after_the_quote_expired_is_refused(clock: FakeClock) -> None:
    gateway = Gateway()
    negotiator = make(clock, gateway=gateway)
    quote = await quote_for(negotiator)
    clock.advance(21_001)
    assert_reject(await decide(negotiator, accept_message(quote, clock.now)), "QUOTE_EXPIRED")
    assert gateway.calls == []


async def test_accept_within_the_replica_grace_is_still_taken(clock: FakeClock) -> None:
    negotiator = make(clock)
    quote = await quote_for(negotiator)
    clock.advance(20_000 + 1_000)
    decision = await decide(negotiator, accept_message(quote, clock.now))
    assert decision.outcome == "ACCEPT"


async def test_backdated_sent_at_does_not_extend_an_expired_quote(clock: FakeClock) -> None:
    negotiator = make(clock)
    quote = await quote_for(negotiator)
    clock.advance(23_000)
    # Within the allowed skew, claiming to be sent while the quote was valid: still expired.
    within_skew = accept_message(quote, clock.now - 4_000)
    assert_reject(await decide(negotiator, within_skew), "QUOTE_EXPIRED")
    # Claiming to be sent long ago (a resend is old by nature): still the quote decides.
    far_back = accept_message(quote, clock.now - 20_000, expires_at_ms=clock.now + 10_000)
    assert_reject(await decide(negotiator, far_back), "QUOTE_EXPIRED")


async def _long_lived_accept(
    negotiator: Negotiator, clock: FakeClock, *, deadline_in_ms: int
) -> dict[str, Any]:
    """A signed ACCEPT valid for as long as its quote (19 s), to be resent later."""
    quote = await quote_for(negotiator)
    return signed(
        accept_message(
            quote,
            clock.now,
            expires_at_ms=clock.now + 19_000,
            delivery_deadline_ms=clock.now + deadline_in_ms,
        )
    )


async def test_a_resent_accept_older_than_the_clock_skew_is_still_answered(
    clock: FakeClock,
) -> None:
    """The 503 tells the buyer to resend the same ACCEPT: it is answered (settlement replays
    it) for as long as its quote is valid, however old the ACCEPT itself is."""
    gateway = Gateway()
    negotiator = make(clock, gateway=gateway)
    accept = await _long_lived_accept(negotiator, clock, deadline_in_ms=120_000)
    first = await negotiator.handle_verified(verify_envelope(accept))
    assert first.outcome == "ACCEPT"
    clock.advance(15_000)  # three times MAX_CLOCK_SKEW_MS, inside the quote's 20 s
    again = await negotiator.handle_verified(verify_envelope(accept))
    assert again.outcome == "ACCEPT", again.envelope["message"]
    assert [call[1] for call in gateway.calls] == [gateway.calls[0][1]] * 2  # same key


async def test_a_deadline_the_provider_cannot_meet_is_refused_before_any_funds_lock(
    clock: FakeClock,
) -> None:
    gateway = Gateway()
    negotiator = make(clock, gateway=gateway)
    quote = await quote_for(negotiator)
    window = quote["message"]["min_delivery_window_ms"] - 1
    message = accept_message(quote, clock.now, delivery_deadline_ms=clock.now + window)
    reject = assert_reject(await decide(negotiator, message), "DELIVERY_WINDOW_TOO_SHORT")
    assert str(window) in reject["reason"]
    assert gateway.calls == []  # nothing forwarded, nothing locked
    assert gateway.lookups == [(BUYER.public_key_b58, "intent-1")]


async def test_a_resend_whose_deadline_is_now_near_is_answered_with_the_trade_it_names(
    clock: FakeClock,
) -> None:
    seen: list[SettledAgreement] = []

    async def fulfil(agreement: SettledAgreement) -> Delivery:
        seen.append(agreement)
        return Delivery(agreement.settlement, {"status": "delivered"})

    gateway = Gateway()
    negotiator = make(clock, gateway=gateway, after_settlement=fulfil)
    accept = await _long_lived_accept(negotiator, clock, deadline_in_ms=30_000)
    assert (await negotiator.handle_verified(verify_envelope(accept))).outcome == "ACCEPT"
    clock.advance(10_000)
    again = await negotiator.handle_verified(verify_envelope(accept))
    assert again.outcome == "ACCEPT"
    assert len(gateway.calls) == 1  # looked up, not created again
    assert [a.time_to_deliver for a in seen] == [True, False]


@pytest.mark.parametrize("state", ["refunded", "slashed", "failed"])
async def test_an_ended_trade_is_answered_with_a_reject_never_an_accept(
    clock: FakeClock, state: str
) -> None:
    record = SettlementRecord(
        "stl-9", state, "ledger", "0.00008", "0", failure_code="COMMIT_WINDOW_MISSED"
    )
    negotiator = make(clock, gateway=Gateway(record))
    quote = await quote_for(negotiator)
    reject = assert_reject(
        await decide(negotiator, accept_message(quote, clock.now)), "COMMIT_WINDOW_MISSED"
    )
    assert reject["settlement"]["state"] == state
    assert "delivery" not in reject


async def test_an_accept_dated_ahead_of_the_clock_is_refused(clock: FakeClock) -> None:
    negotiator = make(clock)
    quote = await quote_for(negotiator)
    ahead = accept_message(quote, clock.now + 6_000, expires_at_ms=clock.now + 19_000)
    assert_reject(await decide(negotiator, ahead), "CLOCK_SKEW_TOO_LARGE")


async def test_expired_accept_is_rejected(clock: FakeClock) -> None:
    negotiator = make(clock)
    quote = await quote_for(negotiator)
    message = accept_message(quote, clock.now - 3_000, expires_at_ms=clock.now - 1)
    assert_reject(await decide(negotiator, message), "INTENT_EXPIRED")


@pytest.mark.parametrize(
    ("refusal", "code"),
    [
        (
            SettlementRefusedError("INSUFFICIENT_ESCROW", "buyer balance too low", 402),
            "INSUFFICIENT_ESCROW",
        ),
        (
            SettlementRefusedError("SETTLEMENT_FAILED", "another ACCEPT exists", 409),
            "SETTLEMENT_FAILED",
        ),
    ],
)
async def test_settlement_refusal_becomes_a_signed_reject_with_its_code(
    clock: FakeClock, refusal: SettlementRefusedError, code: str
) -> None:
    negotiator = make(clock, gateway=Gateway(refusal))
    quote = await quote_for(negotiator)
    reject = assert_reject(await decide(negotiator, accept_message(quote, clock.now)), code)
    assert reject["reason"] == refusal.detail


async def test_settlement_unavailable_propagates_as_a_503_problem(clock: FakeClock) -> None:
    negotiator = make(clock, gateway=Gateway(SettlementUnavailableError("down", retry_after_s=3)))
    quote = await quote_for(negotiator)
    with pytest.raises(SettlementUnavailableError) as caught:
        await decide(negotiator, accept_message(quote, clock.now))
    assert caught.value.status == 503
    assert caught.value.headers == {"Retry-After": "3"}


async def test_accept_without_a_settlement_service_is_rejected_settlement_failed(
    clock: FakeClock,
) -> None:
    negotiator = make(clock, no_settlement=True)
    quote = await quote_for(negotiator)
    assert_reject(await decide(negotiator, accept_message(quote, clock.now)), "SETTLEMENT_FAILED")


# --- REJECT and raw bodies -----------------------------------------------------------------


async def test_reject_is_acknowledged_with_a_signed_reject(clock: FakeClock) -> None:
    incoming = signed(reject_message(clock.now))
    decision = await make(clock).handle_verified(verify_envelope(incoming))
    ack = decision.envelope["message"]
    assert decision.outcome == "REJECT"
    assert decision.event == "pact.reject.acknowledged"
    assert ack["type"] == "REJECT"
    assert ack["intent_id"] == "intent-1"
    assert ack["code"] == "QUOTE_OUT_OF_BAND"
    assert ack["reason"] == "acknowledged: too expensive"
    assert ack["acknowledges"] == message_hash_hex(incoming["message"])
    parse_message(ack)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"not json", "ENVELOPE_MALFORMED"),
        (b"[1, 2]", "ENVELOPE_MALFORMED"),
        (b'{"envelope_version": "pact-envelope/1.0"}', "ENVELOPE_MALFORMED"),
        (b"[" * 100_000, "ENVELOPE_MALFORMED"),
        (b'{"a": NaN}', "ENVELOPE_MALFORMED"),
        (b"\xff\xfe", "ENVELOPE_MALFORMED"),
    ],
)
async def test_bodies_that_are_not_envelopes_are_bad_envelopes(
    clock: FakeClock, raw: bytes, code: str
) -> None:
    with pytest.raises(BadEnvelopeError) as caught:
        await make(clock).handle(raw)
    assert caught.value.code == code
    assert caught.value.status == 400


async def test_handle_logs_the_transcript_event_itself_or_hands_it_to_record(
    clock: FakeClock,
) -> None:
    stream = io.StringIO()
    negotiator = make(clock)
    negotiator.log = make_logger("INFO", stream)
    body = json.dumps(signed(intent_message(clock.now))).encode()
    await negotiator.handle(body)
    [line] = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert (line["event"], line["outcome"], line["round"]) == ("pact.intent.quoted", "ASK", 1)

    recorded: list[tuple[str, dict[str, Any]]] = []
    decision = await negotiator.handle(body, lambda event, fields: recorded.append((event, fields)))
    with pytest.raises(BadEnvelopeError):
        await negotiator.handle(b"not json", lambda event, fields: recorded.append((event, fields)))
    assert recorded[0] == ("pact.intent.quoted", decision.transcript())
    assert recorded[1][0] == "pact.envelope.refused"
    assert recorded[1][1]["code"] == "ENVELOPE_MALFORMED"
    assert len(stream.getvalue().splitlines()) == 1  # nothing more was logged
