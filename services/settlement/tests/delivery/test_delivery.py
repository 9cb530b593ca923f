"""hash_reveal lifecycle over HTTP: COMMIT → REVEAL → challenge window → release, and every
objective fault (bad proof, missed deadline, upheld challenge) — on SQLite and Postgres."""

from __future__ import annotations

import base64
import hashlib
from decimal import Decimal
from typing import Any

import pytest
from pact_schema import (
    PROTOCOL_VERSION,
    Keypair,
    commit_hash_hex,
    now_ms,
    parse_message,
    sign_message,
)
from pact_schema.envelope import verify_envelope
from pact_schema.messages import Receipt
from pact_schema.transcript import verify_transcript
from pact_settlement.workers.sweeper import Sweeper

PAYLOAD = b'{"temp_c": 12.5, "city": "Lisbon"}'
NONCE = b"\x01\x02nonce-0001"
COMMIT_HASH = commit_hash_hex(base64.b64encode(PAYLOAD).decode(), base64.b64encode(NONCE).decode())
STRANGER = Keypair(bytes(range(120, 152)))


def _signed(kind: str, intent_id: str, signer: Keypair, **fields: Any) -> dict[str, Any]:
    sent = now_ms()
    message = {
        "protocol_version": PROTOCOL_VERSION,
        "type": kind,
        "intent_id": intent_id,
        "sent_at_ms": sent,
        "expires_at_ms": sent + 60_000,
        **fields,
    }
    return sign_message(message, signer)


def commit_of(pact: Any, intent_id: str, *, commit_hash: str = COMMIT_HASH, signer: Any = None):  # type: ignore[no-untyped-def]
    return _signed("COMMIT", intent_id, signer or pact.provider, commit_hash_hex=commit_hash)


def reveal_of(  # type: ignore[no-untyped-def]
    pact: Any, intent_id: str, *, payload: bytes = PAYLOAD, nonce: bytes = NONCE, signer=None
):
    return _signed(
        "REVEAL",
        intent_id,
        signer or pact.provider,
        payload_b64=base64.b64encode(payload).decode(),
        nonce_b64=base64.b64encode(nonce).decode(),
    )


def challenge_of(pact: Any, intent_id: str, code: str, *, signer: Any = None):  # type: ignore[no-untyped-def]
    return _signed("REJECT", intent_id, signer or pact.buyer, code=code, reason=f"I say {code}")


class Flow:
    def __init__(self, api: Any, pact: Any, app: Any, clock: Any) -> None:
        self.api, self.pact, self.app, self.clock = api, pact, app, clock
        self.client = api.client

    async def locked(self, *, seller_funds: str | None = None, **accept_kw: Any) -> str:
        await self.api.deposit(self.pact.buyer.public_key_b58, "1")
        if seller_funds:
            await self.api.deposit(self.pact.provider.public_key_b58, seller_funds)
        accept = self.pact.accept(**accept_kw)
        response = await self.api.create(accept)
        assert response.status_code == 201, response.text
        return str(accept["message"]["intent_id"])

    async def post(
        self, intent_id: str, what: str, envelope: dict[str, Any], *, key: str | None = None
    ) -> Any:
        headers = dict(self.api.provider_auth)
        if what != "challenge":
            headers["Idempotency-Key"] = key or f"{what}-{intent_id}-{COMMIT_HASH}"
        else:
            headers = {}
        return await self.client.post(
            f"/v1/settlements/{intent_id}/{what}", json={what: envelope}, headers=headers
        )

    async def delivered(self, intent_id: str) -> dict[str, Any]:
        committed = await self.post(intent_id, "commit", commit_of(self.pact, intent_id))
        assert committed.status_code == 200, committed.text
        assert committed.json()["state"] == "committed"
        revealed = await self.post(intent_id, "reveal", reveal_of(self.pact, intent_id))
        assert revealed.status_code == 200, revealed.text
        body: dict[str, Any] = revealed.json()
        return body

    def sweeper(self) -> Sweeper:
        state = self.app.state.settlement
        return Sweeper(
            state.sessionmaker,
            settings=state.settings,
            metrics=state.metrics,
            applier=state.applier,
            clock=state.clock,
        )

    async def receipt(self, body: dict[str, Any]) -> Receipt:
        known = (await self.client.get("/.well-known/pact-settlement")).json()
        envelope = body["receipt"]
        verified = verify_envelope(envelope)
        assert verified.signer == known["public_key_b58"]
        message = parse_message(verified.message_raw)
        assert isinstance(message, Receipt)
        assert message.intent_id == body["intent_id"]
        return message


@pytest.fixture
def flow(api: Any, pact: Any, app: Any, clock: Any) -> Flow:
    return Flow(api, pact, app, clock)


async def test_happy_path_commit_reveal_window_closes_released_with_signed_receipt(
    flow: Flow, api: Any, pact: Any
) -> None:
    intent_id = await flow.locked()
    body = await flow.delivered(intent_id)
    assert body["state"] == "delivered"
    assert body["commit_hash_hex"] == COMMIT_HASH
    assert body["reveal_hash_hex"] == COMMIT_HASH
    assert body["receipt"] is None
    assert (await flow.sweeper().run_once()).handled == 0  # the window is still open
    flow.clock.offset_ms = 6_000  # challenge_window_ms is 5 000
    report = await flow.sweeper().run_once()
    assert report.ended == {intent_id: "released"}
    final = await api.settlement(intent_id)
    assert final["state"] == "released"
    assert [e["event"] for e in final["events"]] == [
        "settlement.created",
        "settlement.locked",
        "settlement.committed",
        "settlement.delivered",
        "settlement.released",
    ]
    receipt = await flow.receipt(final)
    assert receipt.fulfilled is True
    assert receipt.failure_code is None
    assert receipt.latency_ms is not None
    assert receipt.buyer_agent_id == pact.buyer.public_key_b58
    assert receipt.seller_agent_id == pact.provider.public_key_b58
    assert receipt.agreed_price == Decimal("0.00008")
    assert receipt.extras["outcome"] == "released"
    assert receipt.extras["amount_released"] == "0.00008"
    assert receipt.extras["amount_refunded"] == "0"
    assert await api.balances(pact.provider.public_key_b58) == (Decimal("0.00008"), Decimal(0))
    assert await api.balances(pact.buyer.public_key_b58) == (Decimal("0.99992"), Decimal(0))
    assert (await flow.sweeper().run_once()).handled == 0  # ended exactly once

    transcript = (
        await flow.client.get(f"/v1/settlements/{intent_id}/transcript", headers=api.admin_auth)
    ).json()
    assert transcript["intent_id"] == intent_id
    assert transcript["settlement"]["state"] == "released"
    assert [e["kind"] for e in transcript["envelopes"]] == [
        "quote",
        "accept",
        "commit",
        "reveal",
        "receipt",
    ]
    assert len(transcript["events"]) == 5
    known = (await flow.client.get("/.well-known/pact-settlement")).json()
    assert transcript["settlement_public_key_b58"] == known["public_key_b58"]
    check = verify_transcript(transcript, settlement_key=known["public_key_b58"])
    assert check.ok, check.lines


async def test_same_commit_again_is_200_and_another_commitment_is_409(
    flow: Flow, pact: Any
) -> None:
    intent_id = await flow.locked()
    first = await flow.post(intent_id, "commit", commit_of(pact, intent_id))
    resent = await flow.post(intent_id, "commit", commit_of(pact, intent_id))  # re-signed
    assert (first.status_code, resent.status_code) == (200, 200)
    assert resent.json()["state"] == "committed"
    other = commit_of(pact, intent_id, commit_hash="ab" * 32)
    changed = await flow.post(intent_id, "commit", other, key="another-key")
    assert changed.status_code == 409, changed.text
    reused = await flow.post(intent_id, "commit", other)
    assert reused.status_code == 409
    assert reused.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    missing = await flow.client.post(
        f"/v1/settlements/{intent_id}/commit",
        json={"commit": commit_of(pact, intent_id)},
        headers=flow.api.provider_auth,
    )
    assert missing.status_code == 400


async def test_commit_and_reveal_must_be_signed_by_the_seller(flow: Flow, pact: Any) -> None:
    intent_id = await flow.locked()
    by_buyer = await flow.post(intent_id, "commit", commit_of(pact, intent_id, signer=pact.buyer))
    assert by_buyer.status_code == 403
    assert by_buyer.json()["code"] == "FAILED_IDENTITY"
    forged = commit_of(pact, intent_id)
    forged["message"]["commit_hash_hex"] = "cd" * 32  # signature no longer covers the message
    tampered = await flow.post(intent_id, "commit", forged, key="k2")
    assert tampered.status_code == 422
    assert tampered.json()["code"] == "FAILED_IDENTITY"
    assert (await flow.post(intent_id, "commit", commit_of(pact, intent_id))).status_code == 200
    reveal = reveal_of(pact, intent_id, signer=STRANGER)
    assert (await flow.post(intent_id, "reveal", reveal)).json()["code"] == "FAILED_IDENTITY"
    wrong_intent = await flow.post(intent_id, "commit", commit_of(pact, "intent-other"), key="k3")
    assert wrong_intent.status_code == 422
    no_token = await flow.client.post(
        f"/v1/settlements/{intent_id}/commit",
        json={"commit": commit_of(pact, intent_id)},
        headers={"Idempotency-Key": "k"},
    )
    assert no_token.status_code == 401


@pytest.mark.parametrize("settings_overrides", [{"require_seller_bond": True}])
async def test_invalid_reveal_refunds_the_buyer_and_slashes_the_bond_to_the_buyer(
    flow: Flow, api: Any, pact: Any
) -> None:
    intent_id = await flow.locked(seller_funds="1")
    assert (await flow.post(intent_id, "commit", commit_of(pact, intent_id))).status_code == 200
    bad = await flow.post(intent_id, "reveal", reveal_of(pact, intent_id, payload=b"other"))
    assert bad.status_code == 200, bad.text
    body = bad.json()
    assert body["state"] == "slashed"
    assert body["failure_code"] == "FAILED_PROOF"
    receipt = await flow.receipt(body)
    assert receipt.fulfilled is False
    assert receipt.failure_code == "FAILED_PROOF"
    assert receipt.extras["bond_slashed"] == "0.00016"
    assert receipt.extras["amount_refunded"] == "0.00008"
    assert await api.balances(pact.buyer.public_key_b58) == (Decimal("1.00016"), Decimal(0))
    assert await api.balances(pact.provider.public_key_b58) == (Decimal("0.99984"), Decimal(0))
    again = await flow.post(intent_id, "reveal", reveal_of(pact, intent_id, payload=b"other"))
    assert again.status_code == 200
    assert again.json()["state"] == "slashed"
    assert (await flow.sweeper().run_once()).handled == 0


async def test_invalid_reveal_without_a_bond_ends_refunded(flow: Flow, api: Any, pact: Any) -> None:
    intent_id = await flow.locked()
    assert (await flow.post(intent_id, "commit", commit_of(pact, intent_id))).status_code == 200
    bad = await flow.post(intent_id, "reveal", reveal_of(pact, intent_id, nonce=b"wrong"))
    assert bad.json()["state"] == "refunded"
    assert bad.json()["failure_code"] == "FAILED_PROOF"
    assert await api.balances(pact.buyer.public_key_b58) == (Decimal(1), Decimal(0))


async def test_reveal_after_the_deadline_is_delivery_deadline_missed(flow: Flow, pact: Any) -> None:
    intent_id = await flow.locked(delivery_in_ms=10_000)
    assert (await flow.post(intent_id, "commit", commit_of(pact, intent_id))).status_code == 200
    flow.clock.offset_ms = 11_000
    late = await flow.post(intent_id, "reveal", reveal_of(pact, intent_id))
    assert late.status_code == 200
    assert late.json()["state"] == "refunded"
    assert late.json()["failure_code"] == "DELIVERY_DEADLINE_MISSED"
    assert (await flow.receipt(late.json())).failure_code == "DELIVERY_DEADLINE_MISSED"


@pytest.mark.parametrize("settings_overrides", [{"require_seller_bond": True}])
async def test_missed_deadline_is_ended_by_the_sweeper_with_refund_and_slash(
    flow: Flow, api: Any, pact: Any
) -> None:
    """A COMMIT is a promise to deliver those bytes: missing the deadline after it slashes.
    A trade nobody committed to is refunded without slashing (COMMIT_WINDOW_MISSED), at the
    end of its commit window, here the delivery deadline since that comes first."""
    silent = await flow.locked(seller_funds="1", delivery_in_ms=10_000)
    committed = await flow.locked(delivery_in_ms=10_000)
    assert (await flow.post(committed, "commit", commit_of(pact, committed))).status_code == 200
    assert (await flow.sweeper().run_once()).handled == 0
    flow.clock.offset_ms = 10_500
    report = await flow.sweeper().run_once()
    assert report.ended == {silent: "refunded", committed: "slashed"}
    for intent_id, code in (
        (silent, "COMMIT_WINDOW_MISSED"),
        (committed, "DELIVERY_DEADLINE_MISSED"),
    ):
        body = await api.settlement(intent_id)
        assert body["failure_code"] == code
        assert body["events"][-1]["actor"] == "sweeper"
        assert (await flow.receipt(body)).failure_code == code
    # Both prices back; one bond slashed to the buyer, the silent one's bond returned.
    assert await api.balances(pact.buyer.public_key_b58) == (Decimal("2.00016"), Decimal(0))


async def test_reveal_needs_a_commit_and_base64(flow: Flow, pact: Any) -> None:
    intent_id = await flow.locked()
    early = await flow.post(intent_id, "reveal", reveal_of(pact, intent_id))
    assert early.status_code == 409
    assert (await flow.post(intent_id, "commit", commit_of(pact, intent_id))).status_code == 200
    envelope = _signed(
        "REVEAL", intent_id, pact.provider, payload_b64="not base64!", nonce_b64="AAAA"
    )
    bad = await flow.post(intent_id, "reveal", envelope, key="b64")
    assert bad.status_code == 422
    assert "base64" in bad.json()["detail"]
    unknown = await flow.post("intent-nope", "commit", commit_of(pact, "intent-nope"))
    assert unknown.status_code == 404


async def test_zero_challenge_window_releases_at_the_reveal(
    flow: Flow, api: Any, pact: Any
) -> None:
    intent_id = await flow.locked(challenge_window_ms=0)
    body = await flow.delivered(intent_id)
    assert body["state"] == "released"
    assert (await flow.receipt(body)).fulfilled is True
    assert await api.balances(pact.provider.public_key_b58) == (Decimal("0.00008"), Decimal(0))


async def test_upheld_latency_challenge_inside_the_window_refunds(
    flow: Flow, api: Any, pact: Any
) -> None:
    intent_id = await flow.locked()
    flow.clock.offset_ms = 400  # the quote promised latency_ms = 100, measured lock → COMMIT
    assert (await flow.post(intent_id, "commit", commit_of(pact, intent_id))).status_code == 200
    revealed = await flow.post(intent_id, "reveal", reveal_of(pact, intent_id))
    assert revealed.json()["state"] == "delivered"
    challenge = challenge_of(pact, intent_id, "LATENCY_BREACH")
    upheld = await flow.post(intent_id, "challenge", challenge)
    assert upheld.status_code == 200, upheld.text
    body = upheld.json()
    assert body["state"] == "refunded"
    assert body["failure_code"] == "LATENCY_BREACH"
    receipt = await flow.receipt(body)
    assert receipt.failure_code == "LATENCY_BREACH"
    assert receipt.latency_ms is not None
    assert receipt.latency_ms >= 400
    again = await flow.post(intent_id, "challenge", challenge)
    assert again.status_code == 200
    assert again.json()["state"] == "refunded"
    assert await api.balances(pact.buyer.public_key_b58) == (Decimal(1), Decimal(0))


async def test_latency_is_measured_to_the_commit_not_the_reveal(
    flow: Flow, api: Any, pact: Any
) -> None:
    """The promise covers lock → COMMIT on this service's clock; a slow REVEAL after a quick
    COMMIT is no breach, and the measurement is in the COMMIT event and transcript."""
    flow.clock.fixed_ms = now_ms()  # the service's clock stands still until moved
    intent_id = await flow.locked()
    flow.clock.offset_ms = 60  # the COMMIT 60 ms after the lock, inside the promised 100
    committed = await flow.post(intent_id, "commit", commit_of(pact, intent_id))
    commit_event = committed.json()["events"][-1]
    assert commit_event["event"] == "settlement.committed"
    assert commit_event["data"]["quoted_latency_ms"] == 100
    assert commit_event["data"]["latency_ms"] == 60
    flow.clock.offset_ms = 5_000
    assert (await flow.post(intent_id, "reveal", reveal_of(pact, intent_id))).status_code == 200
    challenge = challenge_of(pact, intent_id, "LATENCY_BREACH")
    refused = await flow.post(intent_id, "challenge", challenge)
    assert refused.status_code == 422
    assert refused.json()["code"] == "CHALLENGE_REJECTED"
    transcript = await api.client.get(
        f"/v1/settlements/{intent_id}/transcript", headers=api.admin_auth
    )
    commit_entry = next(e for e in transcript.json()["envelopes"] if e["kind"] == "commit")
    assert commit_entry["detail"] == {
        "latency_ms": commit_event["data"]["latency_ms"],
        "quoted_latency_ms": 100,
    }


async def test_unfounded_challenge_is_rejected_recorded_and_the_window_still_releases(
    flow: Flow, api: Any, pact: Any
) -> None:
    intent_id = await flow.locked()
    await flow.delivered(intent_id)
    challenge = challenge_of(pact, intent_id, "FAILED_PROOF")
    rejected = await flow.post(intent_id, "challenge", challenge)
    assert rejected.status_code == 422, rejected.text
    assert rejected.json()["code"] == "CHALLENGE_REJECTED"
    assert "committed hash" in rejected.json()["detail"]
    again = await flow.post(intent_id, "challenge", challenge)
    assert (again.status_code, again.json()["code"]) == (422, "CHALLENGE_REJECTED")
    deadline = await flow.post(
        intent_id, "challenge", challenge_of(pact, intent_id, "DELIVERY_DEADLINE_MISSED")
    )
    assert deadline.status_code == 422
    body = await api.settlement(intent_id)
    assert body["state"] == "delivered"
    assert [e["event"] for e in body["events"]][-2:] == [
        "settlement.challenge_rejected",
        "settlement.challenge_rejected",
    ]
    transcript = (
        await flow.client.get(f"/v1/settlements/{intent_id}/transcript", headers=api.admin_auth)
    ).json()
    challenges = [e for e in transcript["envelopes"] if e["kind"] == "challenge"]
    assert [c["detail"]["verdict"] for c in challenges] == ["rejected", "rejected"]
    flow.clock.offset_ms = 6_000
    assert (await flow.sweeper().run_once()).ended == {intent_id: "released"}


async def test_challenges_outside_the_window_or_by_others_are_refused(
    flow: Flow, pact: Any
) -> None:
    intent_id = await flow.locked()
    not_yet = await flow.post(intent_id, "challenge", challenge_of(pact, intent_id, "FAILED_PROOF"))
    assert (not_yet.status_code, not_yet.json()["code"]) == (409, "CHALLENGE_WINDOW_CLOSED")
    await flow.delivered(intent_id)
    by_seller = challenge_of(pact, intent_id, "FAILED_PROOF", signer=pact.provider)
    refused = await flow.post(intent_id, "challenge", by_seller)
    assert (refused.status_code, refused.json()["code"]) == (403, "FAILED_IDENTITY")
    subjective = await flow.post(intent_id, "challenge", challenge_of(pact, intent_id, "MEH"))
    assert subjective.status_code == 422
    assert subjective.json()["code"] == "SCHEMA_VALIDATION_FAILED"
    flow.clock.offset_ms = 5_001
    late = await flow.post(intent_id, "challenge", challenge_of(pact, intent_id, "FAILED_PROOF"))
    assert (late.status_code, late.json()["code"]) == (409, "CHALLENGE_WINDOW_CLOSED")


async def test_failed_lock_has_a_receipt_too(flow: Flow, api: Any, pact: Any) -> None:
    accept = pact.accept()
    refused = await api.create(accept)
    assert refused.status_code == 402
    body = await api.settlement(accept["message"]["intent_id"])
    assert body["state"] == "failed"
    receipt = await flow.receipt(body)
    assert receipt.fulfilled is False
    # The reference's name for a lock that could not be funded, ours beside it.
    assert receipt.failure_code == "FAILED_ESCROW"
    assert receipt.extras["settlement_failure_code"] == "INSUFFICIENT_ESCROW"
    assert receipt.paid_amount == 0
    assert receipt.receipt_id == f"receipt-{body['intent_id']}-{receipt.timestamp_ms}"
    assert receipt.extras["outcome"] == "failed"


@pytest.mark.parametrize("settings_overrides", [{"transcript_max_envelope_bytes": 300}])
async def test_a_large_reveal_keeps_only_its_hashes_in_the_transcript(
    flow: Flow, api: Any, pact: Any
) -> None:
    intent_id = await flow.locked()
    await flow.delivered(intent_id)
    transcript = (
        await flow.client.get(f"/v1/settlements/{intent_id}/transcript", headers=api.admin_auth)
    ).json()
    assert "reveal" not in [e["kind"] for e in transcript["envelopes"]]
    [omitted] = transcript["omitted"]
    assert omitted["kind"] == "reveal"
    assert omitted["detail"]["payload_sha256"] == hashlib.sha256(PAYLOAD).hexdigest()
    assert omitted["detail"]["payload_bytes"] == len(PAYLOAD)
    assert omitted["detail"]["envelope_kept"] is False
    assert verify_transcript(transcript).ok
    # A FAILED_PROOF challenge is still judged, from the recorded digest.
    rejected = await flow.post(
        intent_id, "challenge", challenge_of(pact, intent_id, "FAILED_PROOF")
    )
    assert rejected.json()["code"] == "CHALLENGE_REJECTED"
