"""Stored signed envelopes."""

from __future__ import annotations

from typing import Any, cast

from pact_schema import canonical_json
from sqlalchemy import Table, select

from pact_settlement.kit.ids import new_id
from pact_settlement.kit.repository import (
    RepositoryBase,
    insert_columns,
    insert_params,
    insert_rows,
)
from pact_settlement.kit.time import session_now
from pact_settlement.transcripts.models import Transcript

__all__ = ["OMITTED", "TranscriptRepository"]

#: ``envelope_json`` of an entry whose envelope was not kept (see ``detail``).
OMITTED = "null"
_TRANSCRIPTS = cast(Table, Transcript.__table__)
_TRANSCRIPT_COLUMNS = insert_columns(Transcript)


class TranscriptRepository(RepositoryBase[Transcript]):
    model = Transcript

    async def store(
        self,
        *,
        settlement_id: str,
        kind: str,
        envelope: dict[str, Any] | None,
        message_hash_hex: str,
        signer: str,
        detail: dict[str, Any] | None = None,
    ) -> Transcript:
        """Append one entry; ``envelope=None`` keeps only its hash, signer and ``detail``."""
        row = self.entry(
            settlement_id=settlement_id,
            kind=kind,
            envelope=envelope,
            message_hash_hex=message_hash_hex,
            signer=signer,
            detail=detail,
        )
        return await self.add(row, flush=False)

    async def insert_now(self, rows: list[Transcript]) -> None:
        """Write entries made by :meth:`entry` at once, in one INSERT, outside the unit of
        work (the create's transcripts: written once, never changed)."""
        await insert_rows(
            self.session, _TRANSCRIPTS, [insert_params(row, _TRANSCRIPT_COLUMNS) for row in rows]
        )

    def entry(
        self,
        *,
        settlement_id: str,
        kind: str,
        envelope: dict[str, Any] | None,
        message_hash_hex: str,
        signer: str,
        detail: dict[str, Any] | None = None,
    ) -> Transcript:
        """An entry as :meth:`store` makes it, not added to the session."""
        return Transcript(
            id=new_id("trn"),
            settlement_id=settlement_id,
            kind=kind,
            message_hash_hex=message_hash_hex.lower(),
            signer=signer,
            envelope_json=OMITTED if envelope is None else canonical_json(envelope).decode("utf-8"),
            detail=detail,
            created_at=session_now(self.session),
        )

    async def for_settlement(self, settlement_id: str) -> list[Transcript]:
        return await self.get_all(
            select(Transcript)
            .where(Transcript.settlement_id == settlement_id)
            .order_by(Transcript.created_at, Transcript.id)
        )

    async def find(self, settlement_id: str, message_hash_hex: str) -> Transcript | None:
        return await self.get_one_or_none(
            select(Transcript).where(
                Transcript.settlement_id == settlement_id,
                Transcript.message_hash_hex == message_hash_hex.lower(),
            )
        )

    async def latest_of_kind(self, settlement_id: str, kind: str) -> Transcript | None:
        return await self.get_one_or_none(
            select(Transcript)
            .where(Transcript.settlement_id == settlement_id, Transcript.kind == kind)
            .order_by(Transcript.created_at.desc(), Transcript.id.desc())
            .limit(1)
        )
