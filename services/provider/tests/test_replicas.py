"""Two replicas with the same key are indistinguishable: no module-level mutable state."""

from __future__ import annotations

from fixtures.provider import (
    FakeClock,
    FakeSettlement,
    accept_message,
    bid_message,
    intent_message,
    reply_of,
    running_provider,
    settings,
    signed,
)
from pact_schema import Keypair


async def test_intent_to_one_replica_bid_and_accept_to_the_other(clock: FakeClock) -> None:
    settlement = FakeSettlement()
    async with (
        running_provider(clock=clock, settlement=settlement) as first,
        running_provider(clock=clock, settlement=settlement) as second,
    ):
        ask = await first.post(signed(intent_message(clock.now)))
        assert reply_of(ask)["round"] == 1
        counter = await second.post(signed(bid_message(ask.json(), 0.00007, clock.now)))
        assert reply_of(counter)["round"] == 2
        ack = await first.post(signed(accept_message(counter.json(), clock.now)))
        assert reply_of(ack)["type"] == "ACCEPT"
        # The same ACCEPT to the other replica is forwarded with the same idempotency key.
        again = await second.post(signed(accept_message(counter.json(), clock.now)))
        assert reply_of(again)["settlement"] == reply_of(ack)["settlement"]
    keys = {seen.headers["idempotency-key"] for seen in settlement.requests}
    assert len(settlement.requests) == 2
    assert len(keys) == 1


async def test_replicas_answer_byte_identically_for_the_same_input(clock: FakeClock) -> None:
    envelope = signed(intent_message(clock.now))
    async with running_provider(clock=clock) as first, running_provider(clock=clock) as second:
        one = await first.post(envelope)
        two = await second.post(envelope)
    assert one.content == two.content


async def test_replica_with_another_key_does_not_honour_the_quote(clock: FakeClock) -> None:
    async with (
        running_provider(clock=clock) as first,
        running_provider(keypair=Keypair.generate(), clock=clock) as stranger,
    ):
        ask = await first.post(signed(intent_message(clock.now)))
        response = await stranger.post(signed(accept_message(ask.json(), clock.now)))
        reject = response.json()["message"]
    assert reject["code"] == "UNTRUSTED_ISSUER"


async def test_rotated_replica_honours_quotes_of_the_previous_key(clock: FakeClock) -> None:
    new_key = Keypair.generate()
    async with running_provider(clock=clock) as old:
        ask = await old.post(signed(intent_message(clock.now)))
        old_key = ask.json()["signer_public_key_b58"]
    async with running_provider(
        settings(previous_keys=old_key), keypair=new_key, clock=clock
    ) as rotated:
        ack = await rotated.post(signed(accept_message(ask.json(), clock.now)))
    assert reply_of(ack, provider=new_key)["type"] == "ACCEPT"


async def test_apps_keep_separate_metrics(clock: FakeClock) -> None:
    async with running_provider(clock=clock) as first, running_provider(clock=clock) as second:
        await first.post(signed(intent_message(clock.now)))
        first_metrics = (await first.http.get("/metrics")).text
        second_metrics = (await second.http.get("/metrics")).text
    line = 'pact_provider_messages_total{code="",message_type="INTENT",outcome="ASK"} 1.0'
    assert line in first_metrics
    assert 'message_type="INTENT"' not in second_metrics
