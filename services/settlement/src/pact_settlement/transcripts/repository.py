"""Stored signed envelopes."""

from __future__ import annotations

from typing import Any

from pact_schema import canonical_json
from sqlalchemy import select

from pact_settlement.kit.ids import new_id
from pact_settlement.kit.repository import RepositoryBase
from pact_settlement.kit.time import utcnow
from pact_settlement.transcripts.models import Transcript

__all__ = ["TranscriptRepository"]


class TranscriptRepository(RepositoryBase[Transcript]):
    model = Transcript

    async def store(
        self,
        *,
        settlement_id: str,
        kind: str,
        envelope: dict[str, Any],
        message_hash_hex: str,
        signer: str,
    ) -> Transcript:
        row = Transcript(
            id=new_id("trn"),
            settlement_id=settlement_id,
            kind=kind,
            message_hash_hex=message_hash_hex.lower(),
            signer=signer,
            envelope_json=canonical_json(envelope).decode("utf-8"),
            created_at=utcnow(),
        )
        return await self.add(row, flush=False)

    async def for_settlement(self, settlement_id: str) -> list[Transcript]:
        return await self.get_all(
            select(Transcript)
            .where(Transcript.settlement_id == settlement_id)
            .order_by(Transcript.created_at, Transcript.id)
        )
