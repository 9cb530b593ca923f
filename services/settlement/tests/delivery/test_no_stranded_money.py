"""Money never stays locked for a trade nobody delivers, and nobody can block another buyer.

* intent ids are unique per buyer: a stranger who learns a buyer's intent id and settles it
  first does not stop that buyer, and every URL can name a settlement by its id;
* the seller may call a trade off before delivering (a signed abort): full refund, no slash;
* a locked settlement nobody commits to within its commit window is refunded, no slash.

On SQLite and Postgres, through the HTTP app.
"""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any

import pytest
from pact_schema import PROTOCOL_VERSION, Keypair, commit_hash_hex, now_ms, sign_message
from pact_settlement.workers.sweeper import Sweeper

STRANGER = Keypair(bytes(range(150, 182)))
PAYLOAD_B64 = base64.b64encode(b'{"temp_c": 3.5}').decode()
NONCE_B64 = base64.b64encode(b"nonce-0123456789").decode()
COMMIT = commit_hash_hex(PAYLOAD_B64, NONCE_B64)


def _signed(kind: str, intent_id: str, signer: Keypair, **fields: Any) -> dict[str, Any]:
    sent = now_ms()
    return sign_message(
        {
            "protocol_version": PROTOCOL_VERSION,
            "type": kind,
            "intent_id": intent_id,
            "sent_at_ms": sent,
            "expires_at_ms": sent + 60_000,
            **fields,
        },
        signer,
    )


async def _post(api: Any, ref: str, what: str, envelope: dict[str, Any], key: str = "") -> Any:
    headers = {**api.provider_auth, "Idempotency-Key": key or f"{what}-{ref}"}
    return await api.client.post(
        f"/v1/settlements/{ref}/{what}", json={what: envelope}, headers=headers
    )


def _sweeper(app: Any) -> Sweeper:
    s = app.state.settlement
    return Sweeper(
        s.sessionmaker, settings=s.settings, metrics=s.metrics, applier=s.applier, clock=s.clock
    )


async def test_a_stranger_settling_a_buyers_intent_id_first_does_not_block_the_buyer(
    api: Any, pact: Any
) -> None:
    intent_id = pact.intent_id()
    await api.deposit(STRANGER.public_key_b58, "1")
    await api.deposit(pact.buyer.public_key_b58, "1")
    squatted = await api.create(pact.accept(intent_id=intent_id, buyer=STRANGER))
    assert squatted.status_code == 201, squatted.text
    mine = await api.create(pact.accept(intent_id=intent_id))
    assert mine.status_code == 201, mine.text
    assert mine.json()["buyer"] == pact.buyer.public_key_b58
    assert mine.json()["id"] != squatted.json()["id"]

    ambiguous = await api.client.get(f"/v1/settlements/{intent_id}", headers=api.provider_auth)
    assert ambiguous.status_code == 409
    assert ambiguous.json()["code"] == "AMBIGUOUS_INTENT_ID"
    assert set(ambiguous.json()["settlement_ids"]) == {mine.json()["id"], squatted.json()["id"]}
    by_id = await api.client.get(f"/v1/settlements/{mine.json()['id']}", headers=api.admin_auth)
    assert by_id.json()["buyer"] == pact.buyer.public_key_b58
    narrowed = await api.client.get(
        f"/v1/settlements/{intent_id}",
        params={"buyer": pact.buyer.public_key_b58},
        headers=api.admin_auth,
    )
    assert narrowed.json()["id"] == mine.json()["id"]
    transcript = await api.client.get(
        f"/v1/settlements/{mine.json()['id']}/transcript", headers=api.admin_auth
    )
    assert transcript.json()["settlement"]["buyer"] == pact.buyer.public_key_b58


async def test_the_same_buyer_cannot_settle_one_intent_id_twice(api: Any, pact: Any) -> None:
    intent_id = pact.intent_id()
    await api.deposit(pact.buyer.public_key_b58, "1")
    assert (await api.create(pact.accept(intent_id=intent_id))).status_code == 201
    again = await api.create(pact.accept(intent_id=intent_id, price=Decimal("0.00009")))
    assert again.status_code == 409
    assert again.json()["code"] == "DUPLICATE_INTENT"


async def test_delivery_by_settlement_id_and_challenges_narrowed_by_their_signer(
    api: Any, pact: Any, clock: Any
) -> None:
    intent_id = pact.intent_id()
    await api.deposit(STRANGER.public_key_b58, "1")
    await api.deposit(pact.buyer.public_key_b58, "1")
    theirs = (await api.create(pact.accept(intent_id=intent_id, buyer=STRANGER))).json()
    mine = (await api.create(pact.accept(intent_id=intent_id))).json()
    # By intent id the seller's COMMIT is ambiguous (both trades are this seller's) ...
    ambiguous = await _post(
        api,
        intent_id,
        "commit",
        _signed("COMMIT", intent_id, pact.provider, commit_hash_hex=COMMIT),
    )
    assert ambiguous.status_code == 409
    assert ambiguous.json()["code"] == "AMBIGUOUS_INTENT_ID"
    # ... by settlement id it is not.
    commit = _signed("COMMIT", intent_id, pact.provider, commit_hash_hex=COMMIT)
    assert (await _post(api, mine["id"], "commit", commit)).json()["state"] == "committed"
    reveal = _signed(
        "REVEAL", intent_id, pact.provider, payload_b64=PAYLOAD_B64, nonce_b64=NONCE_B64
    )
    assert (await _post(api, mine["id"], "reveal", reveal)).json()["state"] == "delivered"
    # A buyer's challenge by intent id reaches that buyer's own settlement.
    challenge = _signed("REJECT", intent_id, pact.buyer, code="FAILED_PROOF", reason="no")
    answer = await api.client.post(
        f"/v1/settlements/{intent_id}/challenge", json={"challenge": challenge}
    )
    assert answer.status_code == 422  # the proof holds: rejected on the merits, not misrouted
    assert answer.json()["intent_id"] == intent_id
    stranger_view = await api.client.get(f"/v1/settlements/{theirs['id']}", headers=api.admin_auth)
    assert stranger_view.json()["state"] == "locked"


@pytest.mark.parametrize("settings_overrides", [{"require_seller_bond": True}])
async def test_the_seller_can_call_a_trade_off_before_delivering_without_being_slashed(
    api: Any, pact: Any
) -> None:
    await api.deposit(pact.buyer.public_key_b58, "1")
    await api.deposit(pact.provider.public_key_b58, "1")
    created = (await api.create(pact.accept())).json()
    intent_id = created["intent_id"]
    assert Decimal(created["bond_locked"]) == Decimal("0.00016")
    abort = _signed(
        "REJECT", intent_id, pact.provider, code="FULFILMENT_FAILED", reason="upstream 503"
    )
    forged = _signed("REJECT", intent_id, pact.buyer, code="FULFILMENT_FAILED", reason="me")
    refused = await _post(api, created["id"], "abort", forged)
    assert refused.status_code == 403
    ended = await _post(api, created["id"], "abort", abort)
    assert ended.status_code == 200, ended.text
    body = ended.json()
    assert body["state"] == "refunded"
    assert body["failure_code"] == "FULFILMENT_FAILED"
    resigned = _signed(
        "REJECT", intent_id, pact.provider, code="FULFILMENT_FAILED", reason="retry, re-signed"
    )
    for retry in (abort, resigned):
        again = await _post(api, created["id"], "abort", retry)
        assert again.status_code == 200
        assert again.json()["events"] == body["events"]
    assert await api.balances(pact.buyer.public_key_b58) == (Decimal(1), Decimal(0))
    assert await api.balances(pact.provider.public_key_b58) == (Decimal(1), Decimal(0))
    kinds = [
        e["kind"]
        for e in (
            await api.client.get(
                f"/v1/settlements/{created['id']}/transcript", headers=api.admin_auth
            )
        ).json()["envelopes"]
    ]
    assert kinds == ["quote", "accept", "abort", "receipt"]


@pytest.mark.parametrize("code", ["LATENCY_BREACH", "X" * 300])
async def test_an_abort_takes_only_the_documented_codes(api: Any, pact: Any, code: str) -> None:
    await api.deposit(pact.buyer.public_key_b58, "1")
    created = (await api.create(pact.accept())).json()
    abort = _signed("REJECT", created["intent_id"], pact.provider, code=code, reason="?")
    refused = await _post(api, created["id"], "abort", abort)
    assert refused.status_code == 422
    assert (await api.settlement(created["id"]))["state"] == "locked"


async def test_a_delivered_trade_cannot_be_aborted(api: Any, pact: Any) -> None:
    await api.deposit(pact.buyer.public_key_b58, "1")
    created = (await api.create(pact.accept())).json()
    intent_id, ref = created["intent_id"], created["id"]
    await _post(
        api, ref, "commit", _signed("COMMIT", intent_id, pact.provider, commit_hash_hex=COMMIT)
    )
    reveal = _signed(
        "REVEAL", intent_id, pact.provider, payload_b64=PAYLOAD_B64, nonce_b64=NONCE_B64
    )
    assert (await _post(api, ref, "reveal", reveal)).json()["state"] == "delivered"
    late = await _post(api, ref, "abort", _signed("REJECT", intent_id, pact.provider, reason="no"))
    assert late.status_code == 409
    assert (await api.settlement(ref))["state"] == "delivered"


@pytest.mark.parametrize("settings_overrides", [{"require_seller_bond": True}])
async def test_a_lock_nobody_commits_to_is_refunded_after_the_commit_window(
    api: Any, pact: Any, app: Any, clock: Any
) -> None:
    """The quote is valid 60 s and the commit grace 30 s: at 91 s, long before the 1 h
    delivery deadline, the money goes back, and the seller's bond with it."""
    await api.deposit(pact.buyer.public_key_b58, "1")
    await api.deposit(pact.provider.public_key_b58, "1")
    grace = app.state.settlement.settings.commit_grace_ms
    created = (await api.create(pact.accept(delivery_in_ms=3_600_000))).json()
    assert Decimal(created["bond_locked"]) == Decimal("0.00016")
    assert (await _sweeper(app).run_once()).handled == 0
    clock.offset_ms = 60_000 + grace + 1_000
    report = await _sweeper(app).run_once()
    assert report.ended == {created["intent_id"]: "refunded"}
    body = await api.settlement(created["id"])
    assert body["failure_code"] == "COMMIT_WINDOW_MISSED"
    assert await api.balances(pact.buyer.public_key_b58) == (Decimal(1), Decimal(0))
    assert await api.balances(pact.provider.public_key_b58) == (Decimal(1), Decimal(0))


async def test_a_commit_after_the_commit_window_refunds_instead_of_committing(
    api: Any, pact: Any, app: Any, clock: Any
) -> None:
    await api.deposit(pact.buyer.public_key_b58, "1")
    created = (await api.create(pact.accept(delivery_in_ms=3_600_000))).json()
    clock.offset_ms = 60_000 + app.state.settlement.settings.commit_grace_ms + 1
    commit = _signed("COMMIT", created["intent_id"], pact.provider, commit_hash_hex=COMMIT)
    answer = await _post(api, created["id"], "commit", commit)
    assert answer.status_code == 200
    assert answer.json()["state"] == "refunded"
    assert answer.json()["failure_code"] == "COMMIT_WINDOW_MISSED"


async def test_an_intent_id_shaped_like_a_settlement_id_still_names_its_settlement(
    api: Any, pact: Any
) -> None:
    """Settlement ids are in the intent id alphabet: one that is not an existing settlement's
    id is read as the intent id it is."""
    intent_id = "st_" + "0" * 26
    await api.deposit(pact.buyer.public_key_b58, "1")
    created = await api.create(pact.accept(intent_id=intent_id))
    assert created.status_code == 201, created.text
    found = await api.client.get(f"/v1/settlements/{intent_id}", headers=api.admin_auth)
    assert found.status_code == 200
    assert found.json()["id"] == created.json()["id"]
    assert found.json()["intent_id"] == intent_id
