"""The audit transcript of one settlement: ordered signed envelopes and events, self-describing.

::

    {"format": "pact-settlement-transcript/1", "intent_id": …, "settlement": {…},
     "envelopes": [{"kind": "quote"|"accept"|"commit"|"abort"|"reveal"|"challenge"|"receipt",
                    "envelope": {…exactly as signed…}, "recorded_at": …,
                    "message_hash_hex": …, "signer": …, "detail": {…}|null}, …],
     "omitted": [{"kind": "reveal", "message_hash_hex": …, "signer": …, "recorded_at": …,
                  "detail": {"payload_bytes", "payload_sha256", "envelope_sha256", …}}],
     "events": [{seq, event, from_state, to_state, actor, reason, data, created_at}, …],
     "settlement_public_key_b58": …}

Envelopes come in protocol order (quote, accept, commit, the seller's abort, reveal, challenges,
receipt; by time
within a kind) and verify offline with ``pact verify-transcript`` (RECEIPTs against
``settlement_public_key_b58``, which must match ``/.well-known/pact-settlement``). A REVEAL
larger than ``TRANSCRIPT_MAX_ENVELOPE_BYTES`` is listed under ``omitted`` with its hashes and
sizes instead of the envelope, so every listed envelope can still be verified.
"""

from __future__ import annotations

import json
from typing import Any

from pact_schema.transcript_v4 import export_v4
from sqlalchemy.ext.asyncio import AsyncSession

from pact_settlement.settlements.lookup import find_settlement
from pact_settlement.settlements.repository import (
    SettlementEventRepository,
    SettlementRepository,
)
from pact_settlement.settlements.schemas import SettlementEventRead, SettlementRead
from pact_settlement.transcripts.models import Transcript
from pact_settlement.transcripts.repository import OMITTED, TranscriptRepository

__all__ = ["KIND_NAMES", "TRANSCRIPT_FORMAT", "TranscriptService"]

TRANSCRIPT_FORMAT = "pact-settlement-transcript/1"
#: stored kind → transcript kind, in protocol order.
KIND_NAMES = {
    "ASK": "quote",
    "ACCEPT": "accept",
    "COMMIT": "commit",
    "ABORT": "abort",
    "REVEAL": "reveal",
    "CHALLENGE": "challenge",
    "STREAM_VOUCHER": "checkpoint",
    "STREAM_STOP": "stop",
    "RECEIPT": "receipt",
}
_ORDER = {kind: i for i, kind in enumerate(KIND_NAMES)}


def _entry(row: Transcript) -> dict[str, Any]:
    return {
        "kind": KIND_NAMES.get(row.kind, row.kind.lower()),
        "recorded_at": row.created_at.isoformat(),
        "message_hash_hex": row.message_hash_hex,
        "signer": row.signer,
        "detail": row.detail,
    }


class TranscriptService:
    def __init__(self, session: AsyncSession, *, settlement_public_key_b58: str) -> None:
        self.settlements = SettlementRepository.from_session(session)
        self.events = SettlementEventRepository.from_session(session)
        self.transcripts = TranscriptRepository.from_session(session)
        self.public_key = settlement_public_key_b58

    async def document(self, ref: str, *, buyer: str | None = None) -> dict[str, Any]:
        """The transcript of the settlement ``ref`` names (a settlement id, or an intent id
        narrowed by ``buyer`` when several buyers used it)."""
        settlement = await find_settlement(self.settlements, ref, buyer=buyer)
        events = await self.events.for_settlement(settlement.id)
        rows = sorted(
            await self.transcripts.for_settlement(settlement.id),
            key=lambda r: (_ORDER.get(r.kind, len(_ORDER)), r.created_at, r.id),
        )
        envelopes, omitted = [], []
        for row in rows:
            if row.envelope_json == OMITTED:
                omitted.append(_entry(row))
            else:
                envelopes.append({**_entry(row), "envelope": json.loads(row.envelope_json)})
        return {
            "format": TRANSCRIPT_FORMAT,
            "intent_id": settlement.intent_id,
            "settlement": SettlementRead.of(settlement, []).model_dump(
                mode="json", exclude={"events"}
            ),
            "envelopes": envelopes,
            "omitted": omitted,
            "events": [SettlementEventRead.of(e).model_dump(mode="json") for e in events],
            "settlement_public_key_b58": self.public_key,
        }

    async def document_v4(self, ref: str, *, buyer: str | None = None) -> dict[str, Any]:
        """The same transcript as ``pact-transcript/4.0`` (:func:`pact_schema.transcript_v4.
        export_v4`): what ``pact transcript export --format v4`` makes of :meth:`document`."""
        return export_v4(await self.document(ref, buyer=buyer))
