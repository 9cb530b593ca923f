"""What a reference-ecosystem buyer or auditor reads from us: RECEIPTs with the reference v1
fields, and ``GET …/transcript?format=pact-transcript/4.0`` valid against the v4 JSON Schema,
verifiable by us and by an independent model of the reference replayer. SQLite and Postgres."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pact_schema import PROTOCOL_VERSION, commit_hash_hex, now_ms, sign_message, verify_envelope
from pact_schema.transcript_v4 import export_v4, verify_v4
from pact_settlement.workers.sweeper import Sweeper

SCHEMA_TESTS = Path(__file__).resolve().parents[4] / "shared/pact_schema/tests"
V4_SCHEMA = json.loads((SCHEMA_TESTS / "v4/pact_transcript_v4.schema.json").read_text())
PAYLOAD_B64 = base64.b64encode(b'{"temp_c": 3.5}').decode()
NONCE_B64 = base64.b64encode(b"nonce-42").decode()
V4 = {"format": "pact-transcript/4.0"}


def _signed(kind: str, intent_id: str, signer: Any, **fields: Any) -> dict[str, Any]:
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


async def _deliver(client: Any, api: Any, pact: Any, intent_id: str, payload_b64: str) -> Any:
    for step, envelope in (
        (
            "commit",
            _signed(
                "COMMIT",
                intent_id,
                pact.provider,
                commit_hash_hex=commit_hash_hex(PAYLOAD_B64, NONCE_B64),
            ),
        ),
        (
            "reveal",
            _signed(
                "REVEAL", intent_id, pact.provider, payload_b64=payload_b64, nonce_b64=NONCE_B64
            ),
        ),
    ):
        response = await client.post(
            f"/v1/settlements/{intent_id}/{step}",
            json={step: envelope},
            headers={**api.provider_auth, "Idempotency-Key": f"{step}-{intent_id}"},
        )
        assert response.status_code == 200, response.text
    return response.json()


def _sweeper(app: Any) -> Sweeper:
    state = app.state.settlement
    return Sweeper(
        state.sessionmaker,
        settings=state.settings,
        metrics=state.metrics,
        applier=state.applier,
        clock=state.clock,
    )


def _js_replay(transcripts: list[dict[str, Any]], folder: Path) -> list[dict[str, Any]]:
    node = shutil.which("node")
    assert node is not None, "node is required (make install)"
    paths = []
    for i, transcript in enumerate(transcripts):
        path = folder / f"v4-{i}.json"
        path.write_text(json.dumps(transcript))
        paths.append(str(path))
    out = subprocess.run(
        [node, str(SCHEMA_TESTS / "vectors/transcript_v4.mjs"), "verify", *paths],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    results: list[dict[str, Any]] = json.loads(out.stdout)["results"]
    return results


async def _v4(client: Any, api: Any, ref: str, **params: str) -> dict[str, Any]:
    response = await client.get(
        f"/v1/settlements/{ref}/transcript", params={**V4, **params}, headers=api.provider_auth
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert list(jsonschema.Draft202012Validator(V4_SCHEMA).iter_errors(body)) == []
    return body


@pytest.mark.parametrize("settings_overrides", [{"require_seller_bond": True}])
@pytest.mark.node
async def test_a_released_trade_reads_as_a_reference_receipt_and_v4_transcript(
    client: Any, api: Any, pact: Any, app: Any, clock: Any, tmp_path: Path
) -> None:
    await api.deposit(pact.buyer.public_key_b58, "1")
    await api.deposit(pact.provider.public_key_b58, "1")
    accept = pact.accept()
    intent_id = accept["message"]["intent_id"]
    created = await api.create(accept)
    assert created.status_code == 201, created.text
    await _deliver(client, api, pact, intent_id, PAYLOAD_B64)
    clock.offset_ms = 6_000
    await _sweeper(app).run_once()
    record = await api.settlement(intent_id)
    assert record["state"] == "released"

    receipt = verify_envelope(record["receipt"]).message_raw
    assert receipt["receipt_id"] == f"receipt-{intent_id}-{receipt['timestamp_ms']}"
    assert receipt["fulfilled"] is True
    assert receipt["agreed_price"] == receipt["paid_amount"] == 0.00008
    assert "failure_code" not in receipt
    assert isinstance(receipt["latency_ms"], int)
    assert {"ticks", "chunks"}.isdisjoint(receipt)  # streaming only, never settled here

    known = (await client.get("/.well-known/pact-settlement")).json()
    assert "receipt_id" in known["receipt_format"]["fields"]
    v4 = await _v4(client, api, record["id"])
    assert v4 == await _v4(client, api, intent_id, buyer=pact.buyer.public_key_b58)
    check = verify_v4(v4, settlement_key=known["public_key_b58"])
    assert check.ok, check.lines
    assert [(r["round_type"], r["agent_id"], r["public_key_b58"]) for r in v4["rounds"]] == [
        ("ASK", "seller", pact.provider.public_key_b58),
        ("ACCEPT", "buyer", pact.buyer.public_key_b58),
    ]
    assert "failure_event" not in v4
    # `pact transcript export --format v4` of the native transcript is the same document
    native = (
        await client.get(f"/v1/settlements/{intent_id}/transcript", headers=api.provider_auth)
    ).json()
    assert export_v4(native) == v4
    (replayed,) = _js_replay([v4], tmp_path)
    assert replayed["ok"], replayed
    assert replayed["warnings"] == []


@pytest.mark.parametrize("settings_overrides", [{"require_seller_bond": True}])
@pytest.mark.node
async def test_a_slash_reads_as_failed_proof_and_a_pact_403_failure_event(
    client: Any, api: Any, pact: Any, tmp_path: Path
) -> None:
    await api.deposit(pact.buyer.public_key_b58, "1")
    await api.deposit(pact.provider.public_key_b58, "1")
    accept = pact.accept()
    intent_id = accept["message"]["intent_id"]
    assert (await api.create(accept)).status_code == 201
    other = base64.b64encode(b"not what was committed").decode()
    body = await _deliver(client, api, pact, intent_id, other)
    assert body["state"] == "slashed"

    receipt = verify_envelope(body["receipt"]).message_raw
    assert receipt["fulfilled"] is False
    assert receipt["failure_code"] == receipt["settlement_failure_code"] == "FAILED_PROOF"
    assert receipt["paid_amount"] == 0
    assert receipt["bond_slashed"] == "0.00016"

    v4 = await _v4(client, api, intent_id)
    event = v4["failure_event"]
    assert (event["code"], event["stage"], event["fault_domain"]) == (
        "PACT-403",
        "reveal",
        "PROVIDER_AT_FAULT",
    )
    assert f"settlement:{body['id']}" in event["evidence_refs"]
    check = verify_v4(v4)
    assert check.ok, check.lines
    (replayed,) = _js_replay([v4], tmp_path)
    assert replayed["ok"], replayed
    assert replayed["warnings"] == []


async def test_a_failed_lock_reads_as_failed_escrow_and_pact_404(
    client: Any, api: Any, pact: Any
) -> None:
    accept = pact.accept()
    assert (await api.create(accept)).status_code == 402  # the buyer has no funds
    record = await api.settlement(accept["message"]["intent_id"])
    receipt = verify_envelope(record["receipt"]).message_raw
    assert (receipt["failure_code"], receipt["settlement_failure_code"]) == (
        "FAILED_ESCROW",
        "INSUFFICIENT_ESCROW",
    )
    v4 = await _v4(client, api, record["id"])
    assert v4["failure_event"]["code"] == "PACT-404"
    assert verify_v4(v4).ok


async def test_an_unknown_transcript_format_is_a_422_problem(
    client: Any, api: Any, pact: Any
) -> None:
    await api.deposit(pact.buyer.public_key_b58, "1")
    accept = pact.accept()
    assert (await api.create(accept)).status_code == 201
    response = await client.get(
        f"/v1/settlements/{accept['message']['intent_id']}/transcript",
        params={"format": "pact-transcript/9"},
        headers=api.provider_auth,
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert (await api.settlement(accept["message"]["intent_id"]))["state"] == "locked"
