"""``GET /.well-known/pact-settlement``: the key RECEIPTs are signed with, and what we speak."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pact_schema import ENVELOPE_VERSION, PROTOCOL_VERSION

from pact_settlement.kit import examples
from pact_settlement.kit.deps import RuntimeDep
from pact_settlement.kit.openapi import ok, responses
from pact_settlement.rails.registry import available_rails
from pact_settlement.receipts.service import RECEIPT_EXTRA_FIELDS, RECEIPT_FIELDS

router = APIRouter(tags=["identity"])


@router.get(
    "/.well-known/pact-settlement",
    summary="The settlement service's public key (verifies RECEIPTs) and capabilities",
    responses=responses(success={200: ok("The key and capabilities", examples.well_known())}),
)
async def get_settlement_identity(runtime: RuntimeDep) -> dict[str, Any]:
    return {
        "public_key_b58": runtime.receipts.public_key_b58,
        "protocol_versions": [PROTOCOL_VERSION],
        "envelope_versions": [ENVELOPE_VERSION],
        "settlement_modes": ["hash_reveal"],
        "rails": available_rails(runtime.settings),
        "challenge_codes": ["FAILED_PROOF", "DELIVERY_DEADLINE_MISSED", "LATENCY_BREACH"],
        "receipt_format": {
            "message_type": "RECEIPT",
            "signed_by": "public_key_b58 (Ed25519 over the SHA-256 of the message's canonical "
            "JSON, as every pact-envelope/1.0)",
            "fields": list(RECEIPT_FIELDS),
            "fields_of": "the reference v1 receipt (receipt_id = receipt-{intent_id}-"
            "{timestamp_ms}); failure_code is the reference's code where one fits",
            "extra_fields": list(RECEIPT_EXTRA_FIELDS),
            "amounts": "agreed_price and paid_amount are JSON numbers; amount_released, "
            "amount_refunded and bond_slashed are decimal strings",
            "outcomes": ["released", "refunded", "slashed", "failed"],
        },
        "transcript": "GET /v1/settlements/{settlement id or intent id}/transcript",
        "transcript_formats": ["pact-settlement-transcript/1", "pact-transcript/4.0"],
    }
